//! CPU slots of one worker (spec 5.6): slots `0..cpus`, taken from the end of the free list.

/// The free CPU slots.
#[derive(Debug)]
pub(crate) struct Slots {
    free: Vec<u32>,
    cpus: u32,
}

impl Slots {
    pub fn new(cpus: u32) -> Self {
        Slots {
            free: (0..cpus).collect(),
            cpus,
        }
    }

    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Takes `n` slots if that many are free.
    pub fn take(&mut self, n: u32) -> Option<Vec<u32>> {
        let n = n as usize;
        if n > self.free.len() {
            return None;
        }
        Some(self.free.split_off(self.free.len() - n))
    }

    /// Gives slots back.
    pub fn release(&mut self, slots: &[u32]) {
        self.free.extend_from_slice(slots);
    }
}
