//! Instruction counts for the footprint report. Under `qemu-system-arm -icount shift=0` every
//! guest instruction advances virtual time by 1 ns, and SysTick counts the board's 25 MHz core
//! clock in that virtual time, so one SysTick tick is 40 instructions. On hardware the same
//! counter gives cycles at the core clock.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

/// Instructions per SysTick tick under `-icount shift=0` (1 ns per instruction, 25 MHz clock).
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

const RELOAD: u32 = 0x00FF_FFFF;

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Starts SysTick as a free-running 24-bit counter whose wraps an interrupt counts.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    // The current value reads 0 until the first reload.
    while SYST::get_current() == 0 {}
}

/// Ticks since [`start`].
pub fn ticks() -> u64 {
    loop {
        let before = WRAPS.load(Ordering::Relaxed);
        let current = SYST::get_current();
        let after = WRAPS.load(Ordering::Relaxed);
        // A reload whose interrupt has not run yet shows as a high value with the old count.
        if before == after && !cortex_m::peripheral::SCB::is_pendst_pending() {
            return u64::from(before) * u64::from(RELOAD + 1) + u64::from(RELOAD - current);
        }
    }
}

/// Instructions executed since [`start`] (under `-icount shift=0`).
pub fn instructions() -> u64 {
    ticks() * INSTRUCTIONS_PER_TICK
}
