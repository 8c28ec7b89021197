//! A growable bit set indexed by message sequence.

#[derive(Clone, Debug, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn with_len(n: u64) -> Self {
        Bits(vec![0; n.div_ceil(64) as usize])
    }

    #[cfg(test)]
    pub fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i`; returns whether it was already set.
    pub fn set(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let m = 1 << (i % 64);
        let was = self.0[w] & m != 0;
        self.0[w] |= m;
        was
    }

    /// Bits set here and not in `other`.
    pub fn count_missing_from(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.0.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_difference() {
        let mut a = Bits::with_len(10);
        assert!(!a.set(3));
        assert!(a.set(3));
        assert!(!a.set(200)); // grows
        assert!(a.get(200) && a.get(3) && !a.get(4));
        let mut b = Bits::default();
        b.set(3);
        assert_eq!(a.count_missing_from(&b), 1);
        assert_eq!(b.count_missing_from(&a), 0);
    }
}
