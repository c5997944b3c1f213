//! CMSDK APB UART0 of the MPS2 boards (QEMU wires it to a TCP socket with `-serial tcp:…`),
//! polled, behind `embedded-io`'s blocking traits so `client_core::wire` can read and write
//! frames on it.

use core::ptr::{read_volatile, write_volatile};

const UART0_BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// The UART; one exists (created once in `main`).
pub struct Uart0 {
    /// Bytes written so far.
    pub sent: u64,
    /// Bytes read so far.
    pub received: u64,
}

fn reg(offset: usize) -> *mut u32 {
    (UART0_BASE + offset) as *mut u32
}

impl Uart0 {
    /// Enables transmit and receive. The divisor matters only on hardware (25 MHz / 16 is the
    /// smallest QEMU accepts).
    ///
    /// # Safety
    /// Call once: the returned value owns the peripheral.
    pub unsafe fn take() -> Self {
        write_volatile(reg(BAUDDIV), 16);
        write_volatile(reg(CTRL), CTRL_TX_EN | CTRL_RX_EN);
        Self {
            sent: 0,
            received: 0,
        }
    }

    fn write_byte(&mut self, b: u8) {
        // SAFETY: UART0's registers, owned by `self`.
        unsafe {
            while read_volatile(reg(STATE)) & STATE_TX_FULL != 0 {}
            write_volatile(reg(DATA), u32::from(b));
        }
    }

    fn read_byte(&mut self) -> u8 {
        // SAFETY: as above.
        unsafe {
            while read_volatile(reg(STATE)) & STATE_RX_FULL == 0 {}
            read_volatile(reg(DATA)) as u8
        }
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            self.write_byte(b);
        }
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_io::Read for Uart0 {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        // Block for the first byte only, as embedded-io asks.
        let Some(first) = buf.first_mut() else {
            return Ok(0);
        };
        *first = self.read_byte();
        self.received += 1;
        Ok(1)
    }
}
