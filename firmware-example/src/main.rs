//! The hefun client on a Cortex-M4F: key generation and upload, then private inferences of the
//! MNIST test images stored in flash, against `hefun serve` over UART0.
//!
//! Runs under `qemu-system-arm -machine mps2-an386 -cpu cortex-m4`; logs with defmt over
//! semihosting (decoded on the host by `defmt-print`) and exits through semihosting with the
//! status the host script checks. The protocol is `client_core::limbwise`: one NTT plan alive
//! at a time, every key and ciphertext streamed limb by limb.
#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod footprint;
mod host_args;
mod uart;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use client_core::limbwise::LimbwiseClient;
use client_core::params::{Params, HEFUN_N16384};
use client_core::protocol::InputSpec;
use client_core::rand_core::SeedableRng;
use client_core::sampling::Csprng;
use client_core::wire::messages::{ClientFrame, Purpose, ServerFrame};
use client_core::wire::{read_frame, write_frame, PROTOCOL_VERSION};
use cortex_m_rt::entry;
use cortex_m_semihosting::debug::{exit, EXIT_FAILURE, EXIT_SUCCESS};
use defmt_semihosting as _;
use footprint::CountingHeap;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::empty();

/// Heap for the protocol. The peak is reported; this is only the ceiling.
const HEAP_BYTES: usize = 3 * 1024 * 1024;

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
    exit(EXIT_FAILURE);
    loop {}
}

fn fail(what: &str) -> ! {
    defmt::error!("{=str}", what);
    exit(EXIT_FAILURE);
    loop {}
}

fn fail_with(what: &str, e: client_core::Error) -> ! {
    defmt::error!("{=str}: {}", what, defmt::Debug2Format(&e));
    exit(EXIT_FAILURE);
    loop {}
}

/// Instructions and bytes spent in one phase of the protocol.
#[derive(Clone, Copy, Default)]
struct Phase {
    /// Computation (instructions outside UART reads and writes).
    compute: u64,
    /// Instructions spent writing to or reading from the UART.
    io: u64,
    up: u64,
    down: u64,
}

/// The UART plus the bookkeeping of who spends what.
struct Link {
    uart: uart::Uart0,
    buf: Vec<u8>,
    /// Instructions spent in UART writes since the last `take_io`.
    io: u64,
}

impl Link {
    fn send(&mut self, frame: &ClientFrame) -> client_core::Result<()> {
        let t = clock::instructions();
        let r = write_frame(&mut self.uart, frame);
        self.io += clock::instructions() - t;
        r
    }

    fn receive(&mut self) -> ServerFrame {
        let t = clock::instructions();
        let frame = match read_frame::<_, ServerFrame>(&mut self.uart, &mut self.buf) {
            Ok(ServerFrame::Error { code, message }) => {
                defmt::error!("server error {=u8}: {=str}", code as u8, message.as_str());
                exit(EXIT_FAILURE);
                loop {}
            }
            Ok(f) => f,
            Err(e) => fail_with("reading a frame", e),
        };
        // The frame owns its words now; the 128 KB read buffer would only add to the peak
        // while the round reply is computed.
        self.buf = Vec::new();
        self.io += clock::instructions() - t;
        frame
    }

    fn take_io(&mut self) -> u64 {
        core::mem::take(&mut self.io)
    }

    /// Runs `work`, returning its compute instructions (total minus UART time) and the UART
    /// time and bytes it caused.
    fn phase<T>(&mut self, work: impl FnOnce(&mut Self) -> T) -> (T, Phase) {
        let (up, down) = (self.uart.sent, self.uart.received);
        self.take_io();
        let t = clock::instructions();
        let out = work(self);
        let total = clock::instructions() - t;
        let io = self.take_io();
        let phase = Phase {
            compute: total - io,
            io,
            up: self.uart.sent - up,
            down: self.uart.received - down,
        };
        (out, phase)
    }
}

fn report(name: &str, p: &Phase) {
    defmt::info!(
        "phase {=str}: {=u64} instructions (~{=u64} ms at 168 MHz), UART {=u64} instructions, {=u64} bytes up, {=u64} bytes down",
        name,
        p.compute,
        p.compute * 1000 / CLOCK_HZ,
        p.io,
        p.up,
        p.down
    );
}

struct Hello {
    input: InputSpec,
    rotations: Vec<i64>,
    rounds: u32,
    keys_known: bool,
}

fn handshake(link: &mut Link, params: &Params) -> Hello {
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        presets: vec![String::from(params.name())],
        key_id: None,
    };
    if let Err(e) = link.send(&hello) {
        fail_with("sending hello", e);
    }
    match link.receive() {
        ServerFrame::Hello {
            preset,
            input,
            rotations,
            rounds,
            keys_known,
            ..
        } => {
            if preset != params.name() {
                fail("the server chose another preset");
            }
            Hello {
                input,
                rotations,
                rounds,
                keys_known,
            }
        }
        _ => fail("expected the server's hello"),
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

/// One inference: the input, then the server's frames until the output. Reports each phase.
fn infer(
    link: &mut Link,
    client: &mut LimbwiseClient,
    rng: &mut Csprng,
    image: &[u8],
    spec: &InputSpec,
    rounds: u32,
) -> usize {
    let x: Vec<f64> = image.iter().map(|&p| f64::from(p) / 255.0).collect();
    let ((), input) = link.phase(|link| {
        if let Err(e) = client.start_inference(&x, spec, rng, |f| link.send(f)) {
            fail_with("encrypting the input", e);
        }
    });
    report("input encryption", &input);

    // Round r's phase runs from its first frame to its reply; the output's to the result.
    let mut output = None;
    for phase in 0..=rounds {
        let (out, p) = link.phase(|link| loop {
            let frame = link.receive();
            if phase < rounds
                && matches!(
                    frame,
                    ServerFrame::CiphertextsBegin {
                        purpose: Purpose::Output,
                        ..
                    }
                )
            {
                fail("the output came before the last round");
            }
            match client.on_frame(frame, rng, |f| link.send(f)) {
                Ok(Some(values)) => break Some(values),
                Ok(None) => {}
                Err(e) => fail_with("handling a server frame", e),
            }
            // The client waits for the next group once it has sent its round reply.
            if client.awaiting_group() {
                break None;
            }
        });
        if phase < rounds {
            defmt::info!("round {=u32}:", phase);
            report("decrypt, sign, re-encrypt", &p);
        } else {
            report("output decryption", &p);
            output = out;
        }
    }
    match output {
        Some(values) => argmax(&values),
        None => fail("no output"),
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
        fail("no entropy seed: pass seed=<64 hex digits> as a semihosting argument")
    };
    let mut rng = Csprng::from_seed(args.seed);
    let stored = IMAGES.len() / PIXELS;
    let images = args.images.unwrap_or(stored);
    if images == 0 || images > stored {
        fail("images= must be between 1 and the number of stored images");
    }
    let params = match Params::from_spec(&HEFUN_N16384) {
        Ok(p) => p,
        Err(e) => fail_with("preset", e),
    };
    let t = clock::instructions();
    let mut client = match LimbwiseClient::new(&params, &mut rng) {
        Ok(c) => c,
        Err(e) => fail_with("secret key", e),
    };
    defmt::info!(
        "phase secret key: {=u64} instructions",
        clock::instructions() - t
    );

    // SAFETY: the only UART0 handle.
    let mut link = Link {
        uart: unsafe { uart::Uart0::take() },
        buf: Vec::new(),
        io: 0,
    };
    let (hello, p) = link.phase(|link| handshake(link, &params));
    report("handshake", &p);
    defmt::info!(
        "server hello: preset {=str}, {=u32} rounds, {=usize} rotation keys, input of {=u32} values",
        params.name(),
        hello.rounds,
        hello.rotations.len(),
        hello.input.len
    );

    if !hello.keys_known {
        let ((), p) = link.phase(|link| {
            if let Err(e) = client.upload_keys(&hello.rotations, &mut rng, |f| link.send(f)) {
                fail_with("key upload", e);
            }
            match link.receive() {
                ServerFrame::KeysAccepted => {}
                _ => fail("expected the keys to be accepted"),
            }
        });
        report("key generation and upload", &p);
        client.release_plan();
    }

    for (i, image) in IMAGES.chunks_exact(PIXELS).take(images).enumerate() {
        let before = (link.uart.sent, link.uart.received);
        let prediction = infer(
            &mut link,
            &mut client,
            &mut rng,
            image,
            &hello.input,
            hello.rounds,
        );
        defmt::info!(
            "image {=usize}: prediction {=usize} ({=u64} bytes up, {=u64} bytes down)",
            i,
            prediction,
            link.uart.sent - before.0,
            link.uart.received - before.1
        );
    }
    if let Err(e) = link.send(&ClientFrame::Bye) {
        fail_with("sending bye", e);
    }
    defmt::info!(
        "footprint: peak heap {=usize} bytes, peak stack {=usize} bytes, {=u32} NTT plans built",
        HEAP.peak(),
        footprint::stack_peak(),
        client.counters().plan_builds
    );
    exit(EXIT_SUCCESS);
    loop {}
}
