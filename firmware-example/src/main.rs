//! The hefun client on a Cortex-M4F: handshake with `hefun serve` over UART0.
//!
//! Runs under `qemu-system-arm -machine mps2-an386 -cpu cortex-m4`; logs with defmt over
//! semihosting (decoded on the host by `defmt-print`) and exits through semihosting with the
//! status the host script checks.
#![no_std]
#![no_main]

extern crate alloc;

mod footprint;
mod uart;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use client_core::params::{Params, HEFUN_N16384};
use client_core::wire::messages::{ClientFrame, ServerFrame};
use client_core::wire::{read_frame, write_frame, PROTOCOL_VERSION};
use cortex_m_rt::entry;
use cortex_m_semihosting::debug::{exit, EXIT_FAILURE, EXIT_SUCCESS};
use defmt_semihosting as _;
use footprint::CountingHeap;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::empty();

/// Heap for the protocol (frames of up to 160 KiB, keys streamed limb by limb).
const HEAP_BYTES: usize = 1024 * 1024;

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

#[entry]
fn main() -> ! {
    {
        use core::mem::MaybeUninit;
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];
        // SAFETY: runs once, before any allocation; the array is used by nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP_BYTES) }
    }
    footprint::paint_stack();
    defmt::info!("hefun firmware: up");
    // SAFETY: the only UART0 handle.
    let mut uart = unsafe { uart::Uart0::take() };
    let params = match Params::from_spec(&HEFUN_N16384) {
        Ok(p) => p,
        Err(_) => fail("preset"),
    };
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        presets: vec![String::from(params.name())],
        key_id: None,
    };
    let mut scratch = Vec::new();
    if write_frame(&mut uart, &hello, &mut scratch).is_err() {
        fail("sending hello");
    }
    let mut buf = Vec::new();
    match read_frame::<_, ServerFrame>(&mut uart, &mut buf) {
        Ok(ServerFrame::Hello {
            preset,
            rounds,
            rotations,
            keys_known,
            ..
        }) => {
            defmt::info!(
                "server hello: preset {=str}, {=u32} rounds, {=usize} rotation keys, keys known: {=bool}",
                preset.as_str(),
                rounds,
                rotations.len(),
                keys_known
            );
        }
        Ok(ServerFrame::Error { code, .. }) => {
            defmt::error!("server error {=u8}", code as u8);
            exit(EXIT_FAILURE);
        }
        Ok(_) => fail("unexpected frame"),
        Err(_) => fail("reading the server's hello"),
    }
    let _ = write_frame(&mut uart, &ClientFrame::Bye, &mut scratch);
    defmt::info!(
        "footprint: peak heap {=usize} bytes, peak stack {=usize} bytes",
        HEAP.peak(),
        footprint::stack_peak()
    );
    exit(EXIT_SUCCESS);
    loop {}
}
