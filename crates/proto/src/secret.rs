//! Secrets: the 16-byte server key and the client-side forms built from it (docs/protocol.md §1).
//!
//! The server only ever knows the 16 random bytes; `dd`/`ee` prefixes and the fake-TLS domain
//! are instructions to the client and never travel on the wire. A user's *kind* decides which
//! client-side form we hand out and which transports we accept for it.

use std::fmt;

/// Errors when reading a secret or a client-side secret string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a secret is 32 hexadecimal characters (16 bytes); got {0} characters")]
    BadLength(usize),
    #[error("a secret may contain only hexadecimal characters 0-9 and a-f")]
    NotHex,
    #[error("a client secret must be 32 hex characters, `dd` + 32, or `ee` + 32 + hex(domain)")]
    BadClientForm,
}

/// The 16-byte server secret. `Debug` and `Display` never show it; use [`Secret::to_hex`]
/// deliberately where an operator asked to see it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Secret([u8; 16]);

impl Secret {
    pub const LEN: usize = 16;

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Secret(bytes)
    }

    /// Parse exactly 32 hex characters (either case).
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() != 32 {
            return Err(SecretError::BadLength(text.len()));
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).map_err(|_| SecretError::NotHex)?;
        Ok(Secret(out))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex of the 16 bytes. Only for places where the operator asked for the secret.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A masked form safe for lists and logs: the first and last two bytes, e.g. `1a2b…4b5c`.
    pub fn masked(&self) -> String {
        let h = self.to_hex();
        format!("{}…{}", &h[..4], &h[28..])
    }

    /// The secret as the client types it for the given kind (docs/protocol.md §1.2/§1.3, hex form).
    pub fn client_form(&self, kind: &SecretKind) -> String {
        match kind {
            SecretKind::Classic => self.to_hex(),
            SecretKind::Padded => format!("dd{}", self.to_hex()),
            SecretKind::FakeTls { domain } => {
                format!("ee{}{}", self.to_hex(), hex::encode(domain.as_bytes()))
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a user's clients reach us.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// Plain obfuscated2 with abridged or intermediate framing (secret typed as 32 hex).
    Classic,
    /// `dd`: obfuscated2 with padded intermediate framing only.
    Padded,
    /// `ee`: fake-TLS carrying obfuscated2 with padded intermediate framing.
    FakeTls { domain: String },
}

impl SecretKind {
    /// The short name used in config files and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            SecretKind::Classic => "classic",
            SecretKind::Padded => "dd",
            SecretKind::FakeTls { .. } => "ee",
        }
    }
}

/// Split a client-side secret string (hex form) into the server secret and its kind.
/// Accepts what TDLib accepts in hex: 16 bytes, `dd` + 16 bytes, `ee` + 16 bytes + domain.
pub fn parse_client_secret(text: &str) -> Result<(Secret, SecretKind), SecretError> {
    let bytes = hex::decode(text.trim()).map_err(|_| SecretError::NotHex)?;
    match bytes.len() {
        16 => Ok((Secret(bytes[..].try_into().unwrap()), SecretKind::Classic)),
        17 if bytes[0] == 0xdd => Ok((Secret(bytes[1..17].try_into().unwrap()), SecretKind::Padded)),
        n if n >= 18 && bytes[0] == 0xee => {
            let domain = String::from_utf8(bytes[17..].to_vec()).map_err(|_| SecretError::BadClientForm)?;
            Ok((Secret(bytes[1..17].try_into().unwrap()), SecretKind::FakeTls { domain }))
        }
        _ => Err(SecretError::BadClientForm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_forms_match_reference_examples() {
        // docs/protocol.md §1.3 example.
        let s = Secret::from_hex("00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(s.client_form(&SecretKind::Classic), "00112233445566778899aabbccddeeff");
        assert_eq!(s.client_form(&SecretKind::Padded), "dd00112233445566778899aabbccddeeff");
        assert_eq!(s.client_form(&SecretKind::FakeTls { domain: "example.com".into() }), "ee00112233445566778899aabbccddeeff6578616d706c652e636f6d");
    }

    #[test]
    fn parses_mtg_example_secret() {
        let (s, kind) = parse_client_secret("ee367a189aee18fa31c190054efd4a8e9573746f726167652e676f6f676c65617069732e636f6d").unwrap();
        assert_eq!(s.to_hex(), "367a189aee18fa31c190054efd4a8e95");
        assert_eq!(kind, SecretKind::FakeTls { domain: "storage.googleapis.com".into() });
    }

    #[test]
    fn rejects_bad_secrets_and_never_prints_them() {
        assert_eq!(Secret::from_hex("abc"), Err(SecretError::BadLength(3)));
        assert_eq!(Secret::from_hex("zz112233445566778899aabbccddeeff"), Err(SecretError::NotHex));
        let s = Secret::from_hex("00112233445566778899aabbccddeeff").unwrap();
        assert!(!format!("{s:?}").contains("0011"));
        assert_eq!(s.masked(), "0011…eeff");
        assert!(parse_client_secret("cc00112233445566778899aabbccddeeff").is_err());
    }
}
