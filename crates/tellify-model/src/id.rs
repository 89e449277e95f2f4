/// A new identifier: a ULID (48 bits of millisecond time, 80 bits from the operating
/// system's CSPRNG via `rand`), so ids sort by creation time yet cannot be guessed.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_26_chars() {
        let first = super::new_id();
        let second = super::new_id();
        assert_eq!(first.len(), 26);
        assert_ne!(first, second);
    }
}
