//! Memory high-water marks for the footprint report: a heap wrapper that remembers the most
//! bytes ever allocated at once, and a painted stack (filled with a pattern at boot; the lowest
//! address whose pattern was overwritten is the deepest the stack went).

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// The heap, counting.
pub struct CountingHeap {
    heap: LlffHeap,
    used: AtomicUsize,
    peak: AtomicUsize,
    /// Peak since the last [`CountingHeap::take_window_peak`].
    window: AtomicUsize,
}

impl CountingHeap {
    /// An empty heap; call [`CountingHeap::init`] before the first allocation.
    pub const fn empty() -> Self {
        Self {
            heap: LlffHeap::empty(),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            window: AtomicUsize::new(0),
        }
    }

    /// Gives the heap its memory.
    ///
    /// # Safety
    /// Once, before any allocation, with memory used by nothing else.
    pub unsafe fn init(&self, start: usize, size: usize) {
        self.heap.init(start, size)
    }

    /// Most bytes allocated at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes allocated now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The peak since the last call (or the start), and starts a new window at the current use.
    pub fn take_window_peak(&self) -> usize {
        let peak = self.window.swap(self.used(), Ordering::Relaxed);
        peak.max(self.used())
    }
}

// SAFETY: forwards to LlffHeap, which is a GlobalAlloc; the counters only observe.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.heap.alloc(layout);
        if !p.is_null() {
            let used = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(used, Ordering::Relaxed);
            self.window.fetch_max(used, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.heap.dealloc(ptr, layout);
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

const PAINT: u32 = 0xDEAD_BEEF;

extern "C" {
    // From cortex-m-rt's link.x: the initial stack pointer and the end of the static data.
    static _stack_start: u32;
    static __ebss: u32;
}

fn stack_bounds() -> (usize, usize) {
    // Linker symbols: only their addresses are used.
    (
        core::ptr::addr_of!(__ebss) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}

/// Paints the free stack below the current frame (leaving 256 bytes of margin).
pub fn paint_stack() {
    let (bottom, _) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = (bottom + 3) & !3;
    while p + 256 < sp {
        // SAFETY: between the end of .bss and below the live stack: unused RAM.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Deepest stack use so far, in bytes.
pub fn stack_peak() -> usize {
    let (bottom, top) = stack_bounds();
    let mut p = (bottom + 3) & !3;
    // SAFETY: reads the painted region, which is plain RAM.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}
