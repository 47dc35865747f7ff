//! Signatures for thinking text we hand to clients (Anthropic thinking
//! blocks, Responses reasoning items), so that when a client sends it back we
//! can tell our own text from anything else before giving it to the model.
//!
//! HMAC-SHA-256 from RustCrypto's `hmac` and `sha2`; keys from the operating
//! system's random source through `getrandom`.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A 32-byte key.
pub(crate) type Key = [u8; 32];

type HmacSha256 = Hmac<Sha256>;

/// SHA-256's block size: HMAC pads (or first hashes) its key to this length.
const BLOCK: usize = 64;

/// HMAC-SHA-256 keyed with `key` (RFC 2104), ready for the message.
///
/// The key goes through RFC 2104's first step here (a key longer than a
/// block is hashed; a shorter one is padded with zeros) so that the
/// block-sized constructor, which cannot fail, can be used instead of
/// `new_from_slice` and its `Result`.
fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as KeyInit>::new(&block.into())
}

/// The MAC over `parts`, each prefixed with its length so that different
/// splits of the same bytes never collide.
fn mac_parts(key: &Key, parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = hmac_sha256(key);
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac
}

/// A signature (64 lower-case hex characters) over `text`, bound to a
/// `purpose` so a signature made for one use cannot be replayed for another.
pub(crate) fn sign(key: &Key, purpose: &str, text: &str) -> String {
    let mac = mac_parts(key, &[purpose.as_bytes(), text.as_bytes()]).finalize();
    hex::encode(mac.into_bytes())
}

/// Whether `signature` (as [`sign`] writes it, surrounding whitespace
/// allowed) is ours for `text`; the MAC is compared in constant time.
pub(crate) fn verify(key: &Key, purpose: &str, text: &str, signature: &str) -> bool {
    let Some(given) = decode_hex(signature.trim()) else {
        return false;
    };
    mac_parts(key, &[purpose.as_bytes(), text.as_bytes()])
        .verify_slice(&given)
        .is_ok()
}

/// `text` with its signature, as one string (`v1.<base64 text>.<signature>`):
/// what we hand a client to give back later (reasoning, search hits). Not
/// secret, only ours.
pub(crate) fn seal(key: &Key, purpose: &str, text: &str) -> String {
    format!(
        "v1.{}.{}",
        crate::util::base64_encode(text.as_bytes()),
        sign(key, purpose, text)
    )
}

/// The text inside a [`seal`]ed string, if we sealed it for `purpose`.
pub(crate) fn open(key: &Key, purpose: &str, sealed: &str) -> Option<String> {
    let rest = sealed.strip_prefix("v1.")?;
    let (b64, sig) = rest.rsplit_once('.')?;
    let text = String::from_utf8(crate::util::base64_decode(b64)?).ok()?;
    verify(key, purpose, &text, sig).then_some(text)
}

/// The 32 bytes of a 64-character lower-case hex string (the only form
/// [`sign`] writes); `None` for anything else.
fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// SHA-256 of `data` (used for key derivation and constant-time comparison).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A key derived from arbitrary secret bytes (e.g. the `THINKING_KEY` text).
pub(crate) fn derive_key(secret: &[u8]) -> Key {
    sha256(secret)
}

/// A fresh random key for this process, from the operating system's random
/// source.
///
/// `getrandom` can fail (no usable source: an old kernel, a sandbox without
/// the syscall or `/dev/urandom`). Rather than panic, or leave the layer
/// unbuildable, this then logs a `WARN` and returns a key hashed from what
/// the process has: std's randomly seeded hash keys, a counter and the
/// clock. Such a key is not guaranteed unpredictable; configure
/// `OllamaTranslateLayer::thinking_key` on such systems.
pub(crate) fn random_key() -> Key {
    key_from(os_key())
}

fn os_key() -> Result<Key, getrandom::Error> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)?;
    Ok(key)
}

/// `random` itself, or on its failure the documented fallback.
fn key_from(random: Result<Key, getrandom::Error>) -> Key {
    match random {
        Ok(key) => key,
        Err(error) => {
            tracing::warn!(
                %error,
                "no operating-system randomness; the thinking key is derived from \
                 weaker sources: set a thinking key (THINKING_KEY) explicitly"
            );
            sha256(&crate::util::weak_entropy())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use hex::{decode as unhex_result, encode as hex};

    fn unhex(s: &str) -> Vec<u8> {
        unhex_result(s).unwrap()
    }

    /// The production HMAC over a plain message (no length prefixes).
    fn hmac_of(key: &[u8], data: &[u8]) -> String {
        let mut mac = hmac_sha256(key);
        mac.update(data);
        hex(mac.finalize().into_bytes())
    }

    #[test]
    fn sha256_matches_fips_180_vectors() {
        assert_eq!(
            hex(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    /// RFC 4231 §4, the HMAC-SHA-256 outputs. Case 5 checks an output
    /// truncated to 128 bits, which this module never does.
    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (key, data, want)) in cases.iter().enumerate() {
            assert_eq!(
                hmac_of(key, data),
                *want,
                "RFC 4231 case {}",
                [1, 2, 3, 4, 6, 7][i]
            );
        }
        // A key of exactly one block is used as it is, not hashed.
        let block = [0x42u8; BLOCK];
        let mut whole = <HmacSha256 as KeyInit>::new_from_slice(&block).unwrap();
        whole.update(b"x");
        assert_eq!(hmac_of(&block, b"x"), hex(whole.finalize().into_bytes()));
    }

    #[test]
    fn signatures_keep_their_format() {
        // Computed by the hand-written HMAC this module used before: clients
        // holding signatures made with the same THINKING_KEY keep them valid.
        let key = derive_key(b"secret");
        let sig = sign(&key, "thinking", "I should call the tool.");
        assert_eq!(
            sig,
            "d6c34ab572034db9624ed1a1d896d812718a00162b9357c5952a44df7c83bf89"
        );
        assert_eq!(
            sign(&derive_key(b""), "", ""),
            "d12735575423a0e7f53a6191fd5ffe258d92297e771ff55f4ba8e4672bf05aba"
        );
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let key = derive_key(b"secret");
        let sig = sign(&key, "thinking", "I should call the tool.");
        assert!(verify(&key, "thinking", "I should call the tool.", &sig));
        assert!(verify(
            &key,
            "thinking",
            "I should call the tool.",
            &format!(" {sig}\n")
        ));
        assert!(!verify(&key, "thinking", "I should call the tool!", &sig));
        assert!(!verify(&key, "reasoning", "I should call the tool.", &sig));
        assert!(!verify(
            &derive_key(b"other"),
            "thinking",
            "I should call the tool.",
            &sig
        ));
        assert!(!verify(&key, "thinking", "I should call the tool.", "00"));
        assert!(!verify(&key, "thinking", "I should call the tool.", ""));
        assert!(!verify(
            &key,
            "thinking",
            "I should call the tool.",
            &sig.to_ascii_uppercase()
        ));
        assert!(!verify(
            &key,
            "thinking",
            "I should call the tool.",
            &format!("{sig}00")
        ));
        // The length prefixes keep the purpose and the text apart.
        assert_ne!(sign(&key, "ab", "c"), sign(&key, "a", "bc"));
    }

    #[test]
    fn random_keys_differ() {
        let keys: Vec<Key> = (0..4).map(|_| random_key()).collect();
        for (i, a) in keys.iter().enumerate() {
            assert_ne!(*a, [0u8; 32]);
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn without_os_randomness_keys_still_differ() {
        let a = key_from(Err(getrandom::Error::UNSUPPORTED));
        let b = key_from(Err(getrandom::Error::UNSUPPORTED));
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
        assert_eq!(key_from(Ok([7; 32])), [7; 32]);
    }
}
