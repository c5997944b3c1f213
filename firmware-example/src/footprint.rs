//! The heap and the memory high-water marks for the footprint report.
//!
//! The heap is a pool of `SLOTS` fixed slots of one limb (N 64-bit words), which take every
//! block above `BIG` bytes up to a limb (limbs, the secret's limb, the FFT buffer of N/2
//! points, a ciphertext's slot values), next to a small first-fit heap for everything else.
//! With a single first-fit heap, big blocks freed and taken in a different order leave holes
//! (80 KB free in pieces and no 64 KB block); the slots cannot fragment, and the small heap
//! only sees small blocks. At most three big blocks are alive at once.
//! The wrapper remembers the most bytes ever allocated at once; the stack is painted at boot
//! (the lowest address whose pattern was overwritten is the deepest the stack went).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// Bytes of one slot: one limb of N = 2^13 words (the firmware's preset, checked at boot).
pub const SLOT_BYTES: usize = 8 << 13;
/// Blocks above this size take a slot.
pub const BIG: usize = 16 * 1024;
/// Big buffers alive at once at most (a decryption holds the FFT buffer and two limbs,
/// an encryption the encoded message, a limb and the secret's limb).
pub const SLOTS: usize = 3;

/// The slots' memory.
struct SlotMemory(UnsafeCell<[[u64; SLOT_BYTES / 8]; SLOTS]>);

// SAFETY: each slot is handed to one owner at a time through `CountingHeap::taken`.
unsafe impl Sync for SlotMemory {}

static SLOT_MEMORY: SlotMemory = SlotMemory(UnsafeCell::new([[0; SLOT_BYTES / 8]; SLOTS]));

/// The heap, counting.
pub struct CountingHeap {
    heap: LlffHeap,
    taken: [AtomicBool; SLOTS],
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
            taken: [const { AtomicBool::new(false) }; SLOTS],
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

    /// Slots taken now.
    pub fn slots_taken(&self) -> usize {
        self.taken
            .iter()
            .filter(|t| t.load(Ordering::Relaxed))
            .count()
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

impl CountingHeap {
    /// A free slot for `layout`, if it is big.
    fn slot(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() <= BIG || layout.size() > SLOT_BYTES || layout.align() > 8 {
            return None;
        }
        let i = self.taken.iter().position(|t| {
            t.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })?;
        // SAFETY: slot i is now ours alone.
        Some(unsafe { (*SLOT_MEMORY.0.get())[i].as_mut_ptr() as *mut u8 })
    }

    /// The slot that `ptr` starts, if any.
    fn slot_of(ptr: *mut u8) -> Option<usize> {
        let base = SLOT_MEMORY.0.get() as usize;
        let offset = (ptr as usize).checked_sub(base)?;
        (offset < SLOTS * SLOT_BYTES).then_some(offset / SLOT_BYTES)
    }
}

// SAFETY: slots are handed out once each until freed; everything else forwards to LlffHeap,
// which is a GlobalAlloc; the counters only observe.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = match self.slot(layout) {
            Some(p) => p,
            None => self.heap.alloc(layout),
        };
        if !p.is_null() {
            let used = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(used, Ordering::Relaxed);
            self.window.fetch_max(used, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match Self::slot_of(ptr) {
            Some(i) => self.taken[i].store(false, Ordering::Release),
            None => self.heap.dealloc(ptr, layout),
        }
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
