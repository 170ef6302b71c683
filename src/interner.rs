//! Texts numbered by first appearance ([`Interner`]): the one table behind the codes of names
//! that policies, the state's read and the output encoders hold.

/// Texts numbered in first-seen order: a text's code is its place in the list, and finding
/// one is a hash (with fixed keys: no code depends on hash order, and a profile repeats). What
/// the engine holds as codes of texts (the policies' names, the state's institutions and drugs,
/// an output chunk's dictionary) is numbered by one.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    texts: Vec<String>,
    codes: std::collections::HashMap<String, u32, foldhash::fast::FixedState>,
}

impl Interner {
    /// Numbers `texts` (distinct) in their order.
    pub fn of(texts: Vec<String>) -> Interner {
        let codes = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Interner { texts, codes }
    }

    /// The code of `text`, added if new.
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(&c) = self.codes.get(text) {
            return c;
        }
        let c = self.texts.len() as u32;
        self.texts.push(text.to_owned());
        self.codes.insert(text.to_owned(), c);
        c
    }

    /// The code of `text`, if it has one.
    pub fn code(&self, text: &str) -> Option<u32> {
        self.codes.get(text).copied()
    }

    /// The texts, by code.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    pub fn into_texts(self) -> Vec<String> {
        self.texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_coded_in_first_seen_order_and_keep_their_codes() {
        let mut texts = Interner::of(vec!["A".to_string(), "B".to_string()]);
        assert_eq!(texts.intern("C"), 2);
        assert_eq!(texts.intern("A"), 0);
        assert_eq!(texts.intern("C"), 2);
        assert_eq!(texts.intern("D"), 3);
        assert_eq!(texts.texts(), ["A", "B", "C", "D"]);
    }
}
