//! Masking secrets in text that may reach a user or a log.
//!
//! A provider that echoes a request back in its error (a proxy quoting the `Authorization`
//! header, a form quoting its fields) shows a secret in the encoding it was sent in, so
//! [`mask`] hides each secret as it is and in each encoding tellify sends secrets in:
//! base64 (standard and URL-safe, padded or not, as in HTTP basic auth; pass
//! [`basic_credentials`] for the `user:password` pair) and URL encoding (as in form bodies
//! and query strings).

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// `text` with every form of every secret replaced by [`MASK`]. Secrets shorter than two
/// characters are skipped: masking every `a` would garble the text and hide nothing.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    // Every form of every secret, longest first: a secret can sit inside another's encoding
    // (the base64 of `user:password` ends in the base64 of `password` when the user part is
    // a multiple of three bytes long), and masking the shorter first would leave the rest.
    let mut forms: Vec<String> = secrets
        .iter()
        .filter(|secret| secret.chars().count() >= 2)
        .flat_map(|secret| encodings(secret))
        .collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    let mut masked = text.to_string();
    for form in forms {
        if !form.is_empty() && masked.contains(&form) {
            masked = masked.replace(&form, MASK);
        }
    }
    masked
}

/// The `user:password` pair HTTP basic auth base64-encodes, to pass to [`mask`] next to the
/// password itself: the base64 of the pair does not contain the base64 of the password.
pub fn basic_credentials(user: &str, password: &str) -> String {
    format!("{user}:{password}")
}

/// Every spelling of `secret` that [`mask`] hides.
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let standard = base64(bytes, STANDARD);
    let url_safe = base64(bytes, URL_SAFE);
    vec![
        secret.to_string(),
        percent_encode(bytes, false, true),
        percent_encode(bytes, false, false),
        percent_encode(bytes, true, true),
        percent_encode(bytes, true, false),
        standard.trim_end_matches('=').to_string(),
        url_safe.trim_end_matches('=').to_string(),
        standard,
        url_safe,
    ]
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Padded base64 of `bytes` with `alphabet`.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let symbols = [
            b0 >> 2,
            ((b0 & 0x03) << 4) | (b1 >> 4),
            ((b1 & 0x0f) << 2) | (b2 >> 6),
            b2 & 0x3f,
        ];
        for (index, symbol) in symbols.iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(alphabet[usize::from(*symbol)]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encoding of every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`), with upper-
/// or lowercase hex; `form` writes a space as `+` as form bodies do.
fn percent_encode(bytes: &[u8], form: bool, upper: bool) -> String {
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::with_capacity(bytes.len() * 3);
    for byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(*byte))
            }
            b' ' if form => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(hex[usize::from(byte >> 4)]));
                out.push(char::from(hex[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cr3t/t0ken+with=odd&chars";

    #[test]
    fn the_plain_secret_is_masked() {
        assert_eq!(
            mask(&format!("bad token {TOKEN}!"), &[TOKEN]),
            "bad token ***!"
        );
    }

    #[test]
    fn standard_base64_is_masked_padded_or_not() {
        // printf 'AC123:tok-en_1' | base64  ->  QUMxMjM6dG9rLWVuXzE=
        let pair = basic_credentials("AC123", "tok-en_1");
        let header = "Authorization: Basic QUMxMjM6dG9rLWVuXzE=";
        assert_eq!(
            mask(header, &["tok-en_1", &pair]),
            "Authorization: Basic ***"
        );
        assert_eq!(mask("Basic QUMxMjM6dG9rLWVuXzE", &[&pair]), "Basic ***");
    }

    #[test]
    fn url_safe_base64_is_masked() {
        // The standard base64 of these bytes has `+` and `/`; the URL-safe one `-` and `_`.
        let secret = "\u{fb}\u{ff}?>";
        let standard = base64(secret.as_bytes(), STANDARD);
        let url_safe = base64(secret.as_bytes(), URL_SAFE);
        assert_ne!(standard, url_safe);
        assert_eq!(mask(&format!("x {url_safe} y"), &[secret]), "x *** y");
        assert_eq!(mask(&format!("x {standard} y"), &[secret]), "x *** y");
    }

    #[test]
    fn url_encoding_is_masked_in_either_case_and_as_a_form() {
        let upper = "token=s3cr3t%2Ft0ken%2Bwith%3Dodd%26chars";
        let lower = "token=s3cr3t%2ft0ken%2bwith%3dodd%26chars";
        assert_eq!(mask(upper, &[TOKEN]), "token=***");
        assert_eq!(mask(lower, &[TOKEN]), "token=***");
        assert_eq!(mask("p=pass+word%21", &["pass word!"]), "p=***");
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b"", STANDARD), "");
        assert_eq!(base64(b"f", STANDARD), "Zg==");
        assert_eq!(base64(b"fo", STANDARD), "Zm8=");
        assert_eq!(base64(b"foo", STANDARD), "Zm9v");
        assert_eq!(base64(b"foobar", STANDARD), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), "-_8=");
    }

    #[test]
    fn tiny_secrets_and_other_text_are_left_alone() {
        assert_eq!(mask("a b c", &["a", ""]), "a b c");
        assert_eq!(mask("nothing here", &[TOKEN]), "nothing here");
    }
}
