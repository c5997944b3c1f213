//! The hefun client on a Cortex-M4F: key generation and upload, then private inferences of the
//! MNIST test images stored in flash, against `hefun serve` over UART0.
//!
//! Runs under `qemu-system-arm -machine mps2-an386 -cpu cortex-m4`; logs with defmt over
//! semihosting (decoded on the host by `defmt-print`) and exits through semihosting with the
//! status the host script checks. The protocol is `client_core::client::ClientSession` on a
//! `DeviceBackend` (one NTT plan alive at a time, every key and ciphertext streamed limb by
//! limb), driven over UART0 by `client_core::client::Link`.
#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod footprint;
mod host_args;
mod key_storage;
mod uart;

use alloc::vec::Vec;

use client_core::client::{
    ClientSession, DeviceBackend, Event, KeySeed, Limits, Link, SeedRecordError, SEED_RECORD_BYTES,
};
use client_core::params::{Params, HEFUN_N8192};
use client_core::rand_core::SeedableRng;
use client_core::sampling::{random_seed, Csprng};
use client_core::wire::messages::ClientFrame;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug::{exit, EXIT_FAILURE, EXIT_SUCCESS};
use defmt_semihosting as _;
use footprint::CountingHeap;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::empty();

/// The small heap (blocks other than limb-sized ones, which have their slots: see
/// `footprint`). With the slots it makes 244 KB of the 256 KB RAM region (memory.x), leaving
/// 12 KB for the stack (its peak is reported, about 7 KB) and the other statics. The peak of
/// both together is reported too.
const HEAP_BYTES: usize = 244 * 1024 - footprint::SLOTS * footprint::SLOT_BYTES;

/// The first MNIST test images, 28×28 bytes each (written by build.rs).
static IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/images.bin"));
const PIXELS: usize = 28 * 28;

/// Instructions per second of the estimate: a 168 MHz Cortex-M4F at one instruction per cycle.
const CLOCK_HZ: u64 = 168_000_000;

#[defmt::panic_handler]
fn defmt_panic() -> ! {
    exit(EXIT_FAILURE);
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Some(at) = info.location() {
        defmt::error!("panic at {=str}:{=u32}", at.file(), at.line());
    }
    defmt::error!("{}", defmt::Display2Format(&info.message()));
    // An allocation failure panics too: say how full the heap was.
    defmt::error!(
        "heap: {=usize} bytes in use ({=usize} slots), peak {=usize}, region {=usize}",
        HEAP.used(),
        HEAP.slots_taken(),
        HEAP.peak(),
        HEAP_BYTES + footprint::SLOTS * footprint::SLOT_BYTES
    );
    exit(EXIT_FAILURE);
    loop {}
}

fn fail(what: &str) -> ! {
    defmt::error!("{=str}", what);
    exit(EXIT_FAILURE);
    loop {}
}

type Session = ClientSession<DeviceBackend>;

/// Logs `e` (and the server's words if it refused) and stops.
fn fail_with(what: &str, session: &Session, e: client_core::Error) -> ! {
    match session.refusal() {
        Some((code, message)) => {
            defmt::error!("{=str}: server error {}: {=str}", what, code, message)
        }
        None => defmt::error!("{=str}: {}", what, e),
    }
    exit(EXIT_FAILURE);
    loop {}
}

/// Where the last phase ended: instructions, UART instructions and bytes.
#[derive(Clone, Copy)]
struct Mark {
    at: u64,
    io: u64,
    up: u64,
    down: u64,
}

impl Mark {
    fn now(link: &Link<uart::Uart0>) -> Self {
        Self {
            at: clock::instructions(),
            io: link.io_ticks,
            up: link.bytes_up,
            down: link.bytes_down,
        }
    }

    /// Reports the phase from `self` to now (computation: instructions outside UART reads and
    /// writes) and starts the next one.
    fn report(&mut self, name: &str, link: &Link<uart::Uart0>) {
        let now = Self::now(link);
        let io = now.io - self.io;
        let compute = (now.at - self.at) - io;
        defmt::info!(
            "phase {=str}: {=u64} instructions (~{=u64} ms at 168 MHz), UART {=u64} instructions, {=u64} bytes up, {=u64} bytes down, peak heap {=usize} bytes",
            name,
            compute,
            compute * 1000 / CLOCK_HZ,
            io,
            now.up - self.up,
            now.down - self.down,
            HEAP.take_window_peak()
        );
        *self = now;
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// One inference of `image`, each phase reported: input encryption, every round (from its
/// first frame to its reply), output decryption.
fn infer(
    link: &mut Link<uart::Uart0>,
    session: &mut Session,
    rng: &mut Csprng,
    image: &[u8],
) -> usize {
    let x: Vec<f64> = image.iter().map(|&p| f64::from(p) / 255.0).collect();
    let mut mark = Mark::now(link);
    let result = link.infer(session, &x, rng, |event, link| match event {
        Event::InputSent => mark.report("input encryption", link),
        Event::RoundAnswered(r) => {
            defmt::info!("round {=u32}:", *r);
            mark.report("decrypt, sign, re-encrypt", link);
        }
        Event::Output(_) => mark.report("output decryption", link),
        _ => {}
    });
    match result {
        Ok(values) => argmax(&values),
        Err(e) => fail_with("inference", session, e),
    }
}

#[entry]
fn main() -> ! {
    {
        use core::mem::MaybeUninit;
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];
        // SAFETY: runs once, before any allocation; the array is used by nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP_BYTES) }
    }
    footprint::paint_stack();
    let Some(core) = cortex_m::Peripherals::take() else {
        fail("core peripherals taken")
    };
    clock::start(core.SYST);
    defmt::info!("hefun firmware: up");

    let Some(args) = host_args::read() else {
        fail("bad semihosting arguments: pass seed=<64 hex digits>, optionally images=<n> and keys=<path of at most 160 bytes>")
    };
    let mut rng = Csprng::from_seed(args.seed);
    let stored = IMAGES.len() / PIXELS;
    let images = args.images.unwrap_or(stored);
    if images == 0 || images > stored {
        fail("images= must be between 1 and the number of stored images");
    }
    let params = match Params::from_spec(&HEFUN_N8192) {
        Ok(p) => p,
        Err(e) => {
            defmt::error!("preset: {}", e);
            fail("no preset")
        }
    };
    if params.n() * 8 != footprint::SLOT_BYTES {
        fail("the heap's slots are not one limb of this preset");
    }
    transform_costs(&params);

    // The key seed is long-term (stored); the generator above is fresh at every boot.
    let key_seed = key_seed(args.keys.as_ref(), &params, &mut rng);
    let t = clock::instructions();
    let backend = match DeviceBackend::new(&params, &mut key_seed.secret_key_rng()) {
        Ok(b) => b,
        Err(e) => {
            defmt::error!("secret key: {}", e);
            fail("no secret key")
        }
    };
    // Holding a second refresh polynomial of a round would not fit the RAM budget.
    let mut session = ClientSession::new(backend, key_seed.public_key_rng()).with_limits(Limits {
        max_round_ciphertexts: 1,
        // Only the light preset's messages, which fold into one FFT buffer.
        exact_decryption: false,
    });
    defmt::info!(
        "phase secret key: {=u64} instructions",
        clock::instructions() - t
    );

    // SAFETY: the only UART0 handle.
    let uart = unsafe { uart::Uart0::take() };
    let mut link = Link::new(uart, false).with_clock(clock::instructions);
    let mut mark = Mark::now(&link);
    let connected = link.connect(&mut session, &mut rng, |event, link| match event {
        Event::HelloSent => mark.report("key id and hello", link),
        Event::KeysSent { .. } => mark.report("server hello, key generation and upload", link),
        Event::Ready => mark.report("until the keys were accepted", link),
        _ => {}
    });
    if let Err(e) = connected {
        fail_with("handshake and key upload", &session, e);
    }
    session.release();
    if let Some(hello) = session.server() {
        defmt::info!(
            "server hello: preset {=str}, {=u32} rounds, {=usize} rotation keys, input of {=u32} values, keys known {=bool}",
            params.name(),
            hello.rounds,
            hello.rotations.len(),
            hello.input.len,
            hello.keys_known
        );
    }

    for (i, image) in IMAGES.chunks_exact(PIXELS).take(images).enumerate() {
        let before = (link.bytes_up, link.bytes_down);
        let prediction = infer(&mut link, &mut session, &mut rng, image);
        defmt::info!(
            "image {=usize}: prediction {=usize} ({=u64} bytes up, {=u64} bytes down)",
            i,
            prediction,
            link.bytes_up - before.0,
            link.bytes_down - before.1
        );
    }
    if let Err(e) = link.send(&ClientFrame::Bye) {
        fail_with("sending bye", &session, e);
    }
    defmt::info!(
        "footprint: peak heap {=usize} bytes, peak stack {=usize} bytes, heap region {=usize} bytes, {=u32} per-prime NTT tables built",
        HEAP.peak(),
        footprint::stack_peak(),
        HEAP_BYTES + footprint::SLOTS * footprint::SLOT_BYTES,
        session.counters().plan_builds
    );
    exit(EXIT_SUCCESS);
    loop {}
}

/// What the building blocks cost on this core, for reading the phases below: one NTT each way,
/// building one prime's NTT tables, and one encoding (inverse FFT and rounding).
fn transform_costs(params: &Params) {
    use client_core::arith::Modulus;
    use client_core::encoding::Encoder;
    use client_core::ring::CompactNtt;
    let Some(m) = params.q().first().and_then(|&q| Modulus::new(q)) else {
        fail("no prime")
    };
    let t = clock::instructions();
    let Ok(ntt) = CompactNtt::new(&m, params.log_n()) else {
        fail("no NTT")
    };
    let tables = clock::instructions() - t;
    let mut a: Vec<u64> = (0..params.n() as u64).map(|i| i * 7 % m.value()).collect();
    let t = clock::instructions();
    ntt.forward(&mut a);
    let fwd = clock::instructions() - t;
    let t = clock::instructions();
    ntt.inverse(&mut a);
    let inv = clock::instructions() - t;
    drop(a);
    let encoder = Encoder::new(params.log_n());
    let values: Vec<f64> = (0..params.slots())
        .map(|i| (i % 17) as f64 / 17.0)
        .collect();
    let t = clock::instructions();
    let encoded = encoder.encode_fixed(&values, (1u64 << 40) as f64, 1e30);
    let enc = clock::instructions() - t;
    drop(encoded);
    drop(values);
    // Decoding one limb frame as a device reads it (from memory here, so without the UART).
    let frame = client_core::wire::messages::ServerFrame::CiphertextLimb {
        ct: 0,
        component: 1,
        scale: 1.0,
        limbs: 1,
        limb: client_core::wire::messages::Limb {
            index: 0,
            words: (0..params.n() as u64)
                .map(|i| (i * 0x9e37_79b9) % m.value())
                .collect(),
        },
    };
    // One limb's worth of bytes holds the packed frame (and takes a slot of the heap).
    let mut bytes = Vec::with_capacity(params.n() * 8);
    if client_core::wire::encode_frame(&frame, &mut bytes).is_err() {
        fail("frame");
    }
    drop(frame);
    let t = clock::instructions();
    let read = client_core::wire::read_server_frame_streamed(&mut bytes.as_slice(), None);
    let frame_cost = clock::instructions() - t;
    drop(read);
    defmt::info!(
        "costs: NTT forward {=u64}, inverse {=u64}, one prime's tables {=u64}, encoding {=u64}, reading a limb frame of {=usize} bytes {=u64} instructions",
        fwd,
        inv,
        tables,
        enc,
        bytes.len(),
        frame_cost
    );
}

fn zeroize_seed(seed: [u8; 32]) -> client_core::zeroize::Zeroizing<[u8; 32]> {
    client_core::zeroize::Zeroizing::new(seed)
}

/// The stored key seed, or a new one (stored if there is a store). A damaged record or one for
/// another preset is replaced: its keys cannot be used anyway, and refusing to start would
/// brick the device.
fn key_seed(store: Option<&key_storage::StorePath>, params: &Params, rng: &mut Csprng) -> KeySeed {
    let Some(path) = store else {
        defmt::info!("key seed: new at every boot (no keys= store)");
        return KeySeed::new(zeroize_seed(random_seed(rng)));
    };
    let mut record = client_core::zeroize::Zeroizing::new([0u8; SEED_RECORD_BYTES + 1]);
    let stored = match key_storage::load(path, &mut record) {
        Some(len) => KeySeed::from_record(&record[..len], params.name()),
        None => Err(SeedRecordError::Empty),
    };
    match stored {
        Ok(seed) => {
            defmt::info!("key seed: stored");
            return seed;
        }
        Err(SeedRecordError::Empty) => defmt::info!("key seed: none stored, making one"),
        Err(e) => defmt::warn!("key seed: {}; making a new one", e),
    }
    let seed = KeySeed::new(zeroize_seed(random_seed(rng)));
    if !key_storage::store(path, &seed.to_record(params.name())) {
        defmt::warn!(
            "key seed: the store cannot be written; the keys will be uploaded again after a reboot"
        );
    }
    seed
}
