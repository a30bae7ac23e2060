//! The rustls `CryptoProvider` of the TLS client: glue between rustls's
//! traits and RustCrypto's crates. No cryptography is written here; every
//! primitive comes from a RustCrypto crate (`sha2`, `hmac`, `aes-gcm`,
//! `chacha20poly1305`, `x25519-dalek`, `p256`, `p384`, `ecdsa`, `rsa`), and
//! the TLS key schedules from rustls (`HkdfUsingHmac`, `PrfUsingHmac`).
//!
//! What it offers, a small set that every public tracker and web server
//! speaks:
//!
//! - TLS 1.3: `AES_128_GCM_SHA256`, `AES_256_GCM_SHA384`,
//!   `CHACHA20_POLY1305_SHA256`.
//! - TLS 1.2: `ECDHE_{ECDSA,RSA}_WITH_{AES_128_GCM_SHA256,
//!   AES_256_GCM_SHA384, CHACHA20_POLY1305_SHA256}`.
//! - Key exchange: X25519, then P-256 (secp256r1).
//! - Signatures (certificates and handshakes): ECDSA P-256 and P-384 with
//!   SHA-256/384; RSA PKCS#1 v1.5 and PSS with SHA-256/384/512, keys of
//!   2048 to 8192 bits (rustls-webpki's range with ring).
//!
//! It is a client only: [`NoKeys`] refuses to load private keys, so no
//! signing code is linked. Randomness comes from [`crate::rand`].

use std::marker::PhantomData;
use std::sync::Arc;

use aes_gcm::aead::generic_array::typenum::Unsigned;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit, KeySizeUser};
use hmac::{Mac, SimpleHmac};
use rustls::crypto::cipher::{
    make_tls12_aad, make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv,
    KeyBlockShape, MessageDecrypter, MessageEncrypter, Nonce, OutboundOpaqueMessage,
    OutboundPlainMessage, PrefixedPayload, Tls12AeadAlgorithm, Tls13AeadAlgorithm,
    UnsupportedOperationError, NONCE_LEN,
};
use rustls::crypto::hash::{self, HashAlgorithm};
use rustls::crypto::tls12::PrfUsingHmac;
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{
    hmac as rhmac, ActiveKeyExchange, CipherSuiteCommon, CryptoProvider, GetRandomFailed,
    KeyExchangeAlgorithm, KeyProvider, SecureRandom, SharedSecret, SupportedKxGroup,
    WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm,
};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, NamedGroup, PeerMisbehaved,
    ProtocolVersion, SignatureScheme, SupportedCipherSuite, Tls12CipherSuite, Tls13CipherSuite,
};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The provider: the suites, groups and signature algorithms above.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256,
            TLS12_ECDHE_ECDSA_AES_256_GCM_SHA384,
            TLS12_ECDHE_ECDSA_CHACHA20_POLY1305_SHA256,
            TLS12_ECDHE_RSA_AES_128_GCM_SHA256,
            TLS12_ECDHE_RSA_AES_256_GCM_SHA384,
            TLS12_ECDHE_RSA_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![&X25519, &P256],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &OsRandom,
        key_provider: &NoKeys,
    }
}

// ---------------------------------------------------------------------------
// Hashes and HMAC (sha2, hmac).

/// A SHA-2 function as rustls's `Hash`.
struct Sha<D>(HashAlgorithm, PhantomData<fn() -> D>);

static SHA256: Sha<Sha256> = Sha(HashAlgorithm::SHA256, PhantomData);
static SHA384: Sha<Sha384> = Sha(HashAlgorithm::SHA384, PhantomData);

impl<D: Digest + Clone + Send + Sync + 'static> hash::Hash for Sha<D> {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(ShaContext(D::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&D::digest(data))
    }

    fn output_len(&self) -> usize {
        <D as Digest>::output_size()
    }

    fn algorithm(&self) -> HashAlgorithm {
        self.0
    }
}

struct ShaContext<D>(D);

impl<D: Digest + Clone + Send + Sync + 'static> hash::Context for ShaContext<D> {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(ShaContext(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// HMAC over a SHA-2 function as rustls's `Hmac`.
struct HmacSha<D>(PhantomData<fn() -> D>);

static HMAC_SHA256: HmacSha<Sha256> = HmacSha(PhantomData);
static HMAC_SHA384: HmacSha<Sha384> = HmacSha(PhantomData);

type HmacBound<D> = SimpleHmac<D>;

impl<D> rhmac::Hmac for HmacSha<D>
where
    D: Digest + hmac::digest::core_api::BlockSizeUser + Clone + Send + Sync + 'static,
{
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        // HMAC takes keys of any length (longer ones are hashed), so this
        // never fails.
        let mac = <HmacBound<D> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Box::new(HmacKey(mac))
    }

    fn hash_output_len(&self) -> usize {
        <D as Digest>::output_size()
    }
}

struct HmacKey<D: Digest + hmac::digest::core_api::BlockSizeUser>(SimpleHmac<D>);

impl<D> rhmac::Key for HmacKey<D>
where
    D: Digest + hmac::digest::core_api::BlockSizeUser + Clone + Send + Sync + 'static,
{
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for part in middle {
            mac.update(part);
        }
        mac.update(last);
        rhmac::Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        <D as Digest>::output_size()
    }
}

// ---------------------------------------------------------------------------
// Cipher suites.

const TLS13_AES_128_GCM_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
            hash_provider: &SHA256,
            confidentiality_limit: 1 << 24,
        },
        hkdf_provider: &HkdfUsingHmac(&HMAC_SHA256),
        aead_alg: &Aead::<aes_gcm::Aes128Gcm>(PhantomData),
        quic: None,
    });

const TLS13_AES_256_GCM_SHA384: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
            hash_provider: &SHA384,
            confidentiality_limit: 1 << 24,
        },
        hkdf_provider: &HkdfUsingHmac(&HMAC_SHA384),
        aead_alg: &Aead::<aes_gcm::Aes256Gcm>(PhantomData),
        quic: None,
    });

const TLS13_CHACHA20_POLY1305_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            hash_provider: &SHA256,
            confidentiality_limit: u64::MAX,
        },
        hkdf_provider: &HkdfUsingHmac(&HMAC_SHA256),
        aead_alg: &Aead::<chacha20poly1305::ChaCha20Poly1305>(PhantomData),
        quic: None,
    });

/// A TLS 1.2 ECDHE suite: the suite id, its hash (SHA-256 or SHA-384, with
/// the PRF over the matching HMAC), the signature schemes, the AEAD.
macro_rules! tls12_suite {
    ($name:ident, $suite:ident, $hash:ident, $hmac:ident, $schemes:ident, $aead:expr, $limit:expr) => {
        const $name: SupportedCipherSuite = SupportedCipherSuite::Tls12(&Tls12CipherSuite {
            common: CipherSuiteCommon {
                suite: CipherSuite::$suite,
                hash_provider: &$hash,
                confidentiality_limit: $limit,
            },
            kx: KeyExchangeAlgorithm::ECDHE,
            sign: $schemes,
            aead_alg: $aead,
            prf_provider: &PrfUsingHmac(&$hmac),
        });
    };
}

tls12_suite!(
    TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256,
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    SHA256,
    HMAC_SHA256,
    ECDSA_SCHEMES,
    &Gcm12::<aes_gcm::Aes128Gcm>(PhantomData),
    1 << 24
);
tls12_suite!(
    TLS12_ECDHE_ECDSA_AES_256_GCM_SHA384,
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    SHA384,
    HMAC_SHA384,
    ECDSA_SCHEMES,
    &Gcm12::<aes_gcm::Aes256Gcm>(PhantomData),
    1 << 24
);
tls12_suite!(
    TLS12_ECDHE_ECDSA_CHACHA20_POLY1305_SHA256,
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    SHA256,
    HMAC_SHA256,
    ECDSA_SCHEMES,
    &ChaCha12,
    u64::MAX
);
tls12_suite!(
    TLS12_ECDHE_RSA_AES_128_GCM_SHA256,
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    SHA256,
    HMAC_SHA256,
    RSA_SCHEMES,
    &Gcm12::<aes_gcm::Aes128Gcm>(PhantomData),
    1 << 24
);
tls12_suite!(
    TLS12_ECDHE_RSA_AES_256_GCM_SHA384,
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    SHA384,
    HMAC_SHA384,
    RSA_SCHEMES,
    &Gcm12::<aes_gcm::Aes256Gcm>(PhantomData),
    1 << 24
);
tls12_suite!(
    TLS12_ECDHE_RSA_CHACHA20_POLY1305_SHA256,
    TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    SHA256,
    HMAC_SHA256,
    RSA_SCHEMES,
    &ChaCha12,
    u64::MAX
);

static ECDSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP256_SHA256,
];

static RSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

// ---------------------------------------------------------------------------
// AEADs (aes-gcm, chacha20poly1305): the record layer of RFC 8446 §5.2 and
// RFC 5246 §6.2.3.3 (GCM's explicit nonce: RFC 5288 §3; ChaCha20-Poly1305's
// implicit one: RFC 7905 §2).

/// An AEAD with a 12-byte nonce and a 16-byte tag, as all three are.
trait Cipher: AeadInPlace + KeyInit + Send + Sync + 'static {}
impl<C: AeadInPlace + KeyInit + Send + Sync + 'static> Cipher for C {}

const TAG_LEN: usize = 16;
/// Largest plaintext of a record (RFC 8446 §5.1, RFC 5246 §6.2.1).
const MAX_FRAGMENT_LEN: usize = 16384;

/// The key rustls derived for this cipher: rustls hands over exactly
/// `key_len()` bytes, so the length always fits.
fn cipher<C: Cipher>(key: &AeadKey) -> C {
    C::new_from_slice(key.as_ref())
        .unwrap_or_else(|_| unreachable!("rustls gives keys of key_len() bytes"))
}

/// Seals `payload[from..]` in place and appends the tag.
fn seal<C: Cipher>(
    cipher: &C,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    payload: &mut PrefixedPayload,
    from: usize,
) -> Result<(), Error> {
    let body = payload
        .as_mut()
        .get_mut(from..)
        .ok_or(Error::EncryptError)?;
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(nonce), aad, body)
        .map_err(|_| Error::EncryptError)?;
    payload.extend_from_slice(&tag);
    Ok(())
}

/// Opens `payload[from..]` (ciphertext then tag) in place; returns the
/// plaintext's end.
fn open<C: Cipher>(
    cipher: &C,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    payload: &mut [u8],
    from: usize,
) -> Result<usize, Error> {
    let end = payload
        .len()
        .checked_sub(TAG_LEN)
        .filter(|&end| end >= from)
        .ok_or(Error::DecryptError)?;
    let (body, tag) = payload.split_at_mut(end);
    let tag = GenericArray::clone_from_slice(tag);
    let body = body.get_mut(from..).ok_or(Error::DecryptError)?;
    cipher
        .decrypt_in_place_detached(GenericArray::from_slice(nonce), aad, body, &tag)
        .map_err(|_| Error::DecryptError)?;
    Ok(end)
}

/// A TLS 1.3 AEAD.
struct Aead<C>(PhantomData<fn() -> C>);

impl<C: Cipher> Tls13AeadAlgorithm for Aead<C> {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Tls13Seal {
            cipher: cipher::<C>(&key),
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Tls13Open {
            cipher: cipher::<C>(&key),
            iv,
        })
    }

    fn key_len(&self) -> usize {
        <C as KeySizeUser>::KeySize::USIZE
    }

    fn extract_keys(
        &self,
        _: AeadKey,
        _: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        // Only for kernel TLS, which we do not use.
        Err(UnsupportedOperationError)
    }
}

struct Tls13Seal<C> {
    cipher: C,
    iv: Iv,
}

impl<C: Cipher> MessageEncrypter for Tls13Seal<C> {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = Nonce::new(&self.iv, seq).0;
        seal(
            &self.cipher,
            &nonce,
            &make_tls13_aad(total_len),
            &mut payload,
            0,
        )?;
        // Every TLS 1.3 record says TLS 1.2 outside (RFC 8446 §5.1).
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_LEN
    }
}

struct Tls13Open<C> {
    cipher: C,
    iv: Iv,
}

impl<C: Cipher> MessageDecrypter for Tls13Open<C> {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(msg.payload.len());
        let end = open(&self.cipher, &nonce, &aad, &mut msg.payload, 0)?;
        msg.payload.truncate(end);
        msg.into_tls13_unpadded_message()
    }
}

/// TLS 1.2 AES-GCM: a 4-byte implicit salt and an 8-byte explicit nonce
/// sent before each record's ciphertext (RFC 5288 §3).
struct Gcm12<C>(PhantomData<fn() -> C>);

const GCM_EXPLICIT_LEN: usize = 8;

impl<C: Cipher> Tls12AeadAlgorithm for Gcm12<C> {
    fn encrypter(&self, key: AeadKey, iv: &[u8], explicit: &[u8]) -> Box<dyn MessageEncrypter> {
        let mut nonce = [0u8; NONCE_LEN];
        let (salt, rest) = nonce.split_at_mut(4);
        salt.copy_from_slice(iv.get(..4).unwrap_or(&[0; 4]));
        rest.copy_from_slice(explicit.get(..GCM_EXPLICIT_LEN).unwrap_or(&[0; 8]));
        Box::new(Gcm12Seal {
            cipher: cipher::<C>(&key),
            iv: Iv::new(nonce),
        })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        let mut salt = [0u8; 4];
        salt.copy_from_slice(iv.get(..4).unwrap_or(&[0; 4]));
        Box::new(Gcm12Open {
            cipher: cipher::<C>(&key),
            salt,
        })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        KeyBlockShape {
            enc_key_len: <C as KeySizeUser>::KeySize::USIZE,
            fixed_iv_len: 4,
            explicit_nonce_len: GCM_EXPLICIT_LEN,
        }
    }

    fn extract_keys(
        &self,
        _: AeadKey,
        _: &[u8],
        _: &[u8],
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Err(UnsupportedOperationError)
    }
}

struct Gcm12Seal<C> {
    cipher: C,
    iv: Iv,
}

impl<C: Cipher> MessageEncrypter for Gcm12Seal<C> {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        // The explicit part: the sequence number mixed into the nonce, as
        // unique as the nonce itself.
        let nonce = Nonce::new(&self.iv, seq).0;
        payload.extend_from_slice(nonce.get(4..).unwrap_or_default());
        payload.extend_from_chunks(&msg.payload);
        let aad = make_tls12_aad(seq, msg.typ, msg.version, msg.payload.len());
        seal(&self.cipher, &nonce, &aad, &mut payload, GCM_EXPLICIT_LEN)?;
        Ok(OutboundOpaqueMessage::new(msg.typ, msg.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + GCM_EXPLICIT_LEN + TAG_LEN
    }
}

struct Gcm12Open<C> {
    cipher: C,
    salt: [u8; 4],
}

impl<C: Cipher> MessageDecrypter for Gcm12Open<C> {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let plain_len = msg
            .payload
            .len()
            .checked_sub(GCM_EXPLICIT_LEN + TAG_LEN)
            .ok_or(Error::DecryptError)?;
        let mut nonce = [0u8; NONCE_LEN];
        let (salt, explicit) = nonce.split_at_mut(4);
        salt.copy_from_slice(&self.salt);
        explicit.copy_from_slice(
            msg.payload
                .get(..GCM_EXPLICIT_LEN)
                .ok_or(Error::DecryptError)?,
        );
        let aad = make_tls12_aad(seq, msg.typ, msg.version, plain_len);
        let end = open(
            &self.cipher,
            &nonce,
            &aad,
            &mut msg.payload,
            GCM_EXPLICIT_LEN,
        )?;
        if plain_len > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }
        Ok(msg.into_plain_message_range(GCM_EXPLICIT_LEN..end))
    }
}

/// TLS 1.2 ChaCha20-Poly1305: a 12-byte implicit IV mixed with the
/// sequence number, nothing explicit (RFC 7905 §2).
struct ChaCha12;

impl Tls12AeadAlgorithm for ChaCha12 {
    fn encrypter(&self, key: AeadKey, iv: &[u8], _: &[u8]) -> Box<dyn MessageEncrypter> {
        Box::new(ChaCha12Seal {
            cipher: cipher::<chacha20poly1305::ChaCha20Poly1305>(&key),
            iv: Iv::copy(iv),
        })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        Box::new(ChaCha12Open {
            cipher: cipher::<chacha20poly1305::ChaCha20Poly1305>(&key),
            iv: Iv::copy(iv),
        })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        KeyBlockShape {
            enc_key_len: 32,
            fixed_iv_len: NONCE_LEN,
            explicit_nonce_len: 0,
        }
    }

    fn extract_keys(
        &self,
        _: AeadKey,
        _: &[u8],
        _: &[u8],
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Err(UnsupportedOperationError)
    }
}

struct ChaCha12Seal {
    cipher: chacha20poly1305::ChaCha20Poly1305,
    iv: Iv,
}

impl MessageEncrypter for ChaCha12Seal {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls12_aad(seq, msg.typ, msg.version, msg.payload.len());
        seal(&self.cipher, &nonce, &aad, &mut payload, 0)?;
        Ok(OutboundOpaqueMessage::new(msg.typ, msg.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + TAG_LEN
    }
}

struct ChaCha12Open {
    cipher: chacha20poly1305::ChaCha20Poly1305,
    iv: Iv,
}

impl MessageDecrypter for ChaCha12Open {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let plain_len = msg
            .payload
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::DecryptError)?;
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls12_aad(seq, msg.typ, msg.version, plain_len);
        let end = open(&self.cipher, &nonce, &aad, &mut msg.payload, 0)?;
        if end > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }
        msg.payload.truncate(end);
        Ok(msg.into_plain_message())
    }
}

// ---------------------------------------------------------------------------
// Key exchange (x25519-dalek, p256).

#[derive(Debug)]
struct X25519Group;
static X25519: X25519Group = X25519Group;

impl SupportedKxGroup for X25519Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = x25519_dalek::StaticSecret::from(random::<32>()?);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ok(Box::new(X25519Share { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct X25519Share {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Share {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        // A low-order point gives an all-zero secret (RFC 8446 §7.4.2).
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

#[derive(Debug)]
struct P256Group;
static P256: P256Group = P256Group;

impl SupportedKxGroup for P256Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        // A random 32-byte string is a valid scalar but for a chance of
        // about 2^-32; draw again then.
        for _ in 0..8 {
            if let Ok(secret) = p256::SecretKey::from_bytes(&random::<32>()?.into()) {
                let public = p256::EncodedPoint::from(secret.public_key())
                    .as_bytes()
                    .to_vec();
                return Ok(Box::new(P256Share { secret, public }));
            }
        }
        Err(Error::FailedToGetRandomBytes)
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

struct P256Share {
    secret: p256::SecretKey,
    /// Uncompressed SEC1 point, as TLS sends it (RFC 8446 §4.2.8.2).
    public: Vec<u8>,
}

impl ActiveKeyExchange for P256Share {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        // Only the uncompressed form is legal in TLS.
        if peer.len() != 65 || peer.first() != Some(&4) {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer = p256::PublicKey::from_sec1_bytes(peer)
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(SharedSecret::from(&shared.raw_secret_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

// ---------------------------------------------------------------------------
// Signature verification (p256, p384, ecdsa, rsa), for rustls-webpki.

/// One (public key algorithm, signature algorithm) pair and how to check it.
struct Verify {
    name: &'static str,
    public_key: AlgorithmIdentifier,
    signature: AlgorithmIdentifier,
    check: fn(&[u8], &[u8], &[u8]) -> bool,
}

impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl SignatureVerificationAlgorithm for Verify {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        if (self.check)(public_key, message, signature) {
            Ok(())
        } else {
            Err(InvalidSignature)
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.public_key
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature
    }
}

/// ECDSA over a curve with a hash (the hash may be longer or shorter than
/// the curve's order: FIPS 186-4 §6.4 truncation, done by `ecdsa`).
/// `public_key` is the SEC1 point, `signature` DER (RFC 5480, RFC 8446
/// §4.2.3).
macro_rules! ecdsa_check {
    ($fn:ident, $curve:ident, $hash:ty) => {
        fn $fn(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
            use $curve::ecdsa::signature::hazmat::PrehashVerifier;
            let Ok(key) = $curve::ecdsa::VerifyingKey::from_sec1_bytes(public_key) else {
                return false;
            };
            let Ok(signature) = $curve::ecdsa::Signature::from_der(signature) else {
                return false;
            };
            key.verify_prehash(&<$hash>::digest(message), &signature)
                .is_ok()
        }
    };
}

ecdsa_check!(p256_sha256, p256, Sha256);
ecdsa_check!(p256_sha384, p256, Sha384);
ecdsa_check!(p384_sha256, p384, Sha256);
ecdsa_check!(p384_sha384, p384, Sha384);

/// An RSA public key (PKCS#1 `RSAPublicKey` DER) of 2048 to 8192 bits.
fn rsa_key(der: &[u8]) -> Option<rsa::RsaPublicKey> {
    use rsa::pkcs1::der::Decode;
    let key = rsa::pkcs1::RsaPublicKey::from_der(der).ok()?;
    let n = rsa::BigUint::from_bytes_be(key.modulus.as_bytes());
    let e = rsa::BigUint::from_bytes_be(key.public_exponent.as_bytes());
    if n.bits() < 2048 {
        return None;
    }
    rsa::RsaPublicKey::new_with_max_size(n, e, 8192).ok()
}

fn rsa_pkcs1<D: Digest + rsa::pkcs8::AssociatedOid>(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    use rsa::signature::Verifier;
    let Some(key) = rsa_key(public_key) else {
        return false;
    };
    let Ok(signature) = rsa::pkcs1v15::Signature::try_from(signature) else {
        return false;
    };
    rsa::pkcs1v15::VerifyingKey::<D>::new(key)
        .verify(message, &signature)
        .is_ok()
}

/// RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash
/// (RFC 8446 §4.2.3; the only parameters webpki accepts in certificates).
fn rsa_pss<D: Digest + hmac::digest::FixedOutputReset + Clone + Send + Sync + 'static>(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Some(key) = rsa_key(public_key) else {
        return false;
    };
    let digest = D::digest(message);
    let scheme = rsa::Pss::new_with_salt::<D>(<D as Digest>::output_size());
    key.verify(scheme, &digest, signature).is_ok()
}

macro_rules! verify {
    ($name:ident, $public:ident, $signature:ident, $check:expr) => {
        static $name: Verify = Verify {
            name: stringify!($name),
            public_key: alg_id::$public,
            signature: alg_id::$signature,
            check: $check,
        };
    };
}

verify!(ECDSA_P256_SHA256, ECDSA_P256, ECDSA_SHA256, p256_sha256);
verify!(ECDSA_P256_SHA384, ECDSA_P256, ECDSA_SHA384, p256_sha384);
verify!(ECDSA_P384_SHA256, ECDSA_P384, ECDSA_SHA256, p384_sha256);
verify!(ECDSA_P384_SHA384, ECDSA_P384, ECDSA_SHA384, p384_sha384);
verify!(
    RSA_PKCS1_SHA256,
    RSA_ENCRYPTION,
    RSA_PKCS1_SHA256,
    rsa_pkcs1::<Sha256>
);
verify!(
    RSA_PKCS1_SHA384,
    RSA_ENCRYPTION,
    RSA_PKCS1_SHA384,
    rsa_pkcs1::<Sha384>
);
verify!(
    RSA_PKCS1_SHA512,
    RSA_ENCRYPTION,
    RSA_PKCS1_SHA512,
    rsa_pkcs1::<Sha512>
);
verify!(
    RSA_PSS_SHA256,
    RSA_ENCRYPTION,
    RSA_PSS_SHA256,
    rsa_pss::<Sha256>
);
verify!(
    RSA_PSS_SHA384,
    RSA_ENCRYPTION,
    RSA_PSS_SHA384,
    rsa_pss::<Sha384>
);
verify!(
    RSA_PSS_SHA512,
    RSA_ENCRYPTION,
    RSA_PSS_SHA512,
    rsa_pss::<Sha512>
);

/// Every algorithm for certificate chains, and which serve each TLS
/// signature scheme in handshakes (TLS 1.2 lets any curve go with any
/// ECDSA hash; TLS 1.3 pins them, and rustls checks that).
static SIGNATURES: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        &ECDSA_P256_SHA256,
        &ECDSA_P256_SHA384,
        &ECDSA_P384_SHA256,
        &ECDSA_P384_SHA384,
        &RSA_PKCS1_SHA256,
        &RSA_PKCS1_SHA384,
        &RSA_PKCS1_SHA512,
        &RSA_PSS_SHA256,
        &RSA_PSS_SHA384,
        &RSA_PSS_SHA512,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[&ECDSA_P384_SHA384, &ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[&ECDSA_P256_SHA256, &ECDSA_P384_SHA256],
        ),
        (SignatureScheme::RSA_PSS_SHA512, &[&RSA_PSS_SHA512]),
        (SignatureScheme::RSA_PSS_SHA384, &[&RSA_PSS_SHA384]),
        (SignatureScheme::RSA_PSS_SHA256, &[&RSA_PSS_SHA256]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[&RSA_PKCS1_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[&RSA_PKCS1_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[&RSA_PKCS1_SHA256]),
    ],
};

// ---------------------------------------------------------------------------
// Randomness and keys.

fn random<const N: usize>() -> Result<[u8; N], Error> {
    crate::rand::bytes::<N>().map_err(|_| Error::FailedToGetRandomBytes)
}

#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        crate::rand::fill(buf).map_err(|_| GetRandomFailed)
    }
}

/// A client without client certificates loads no keys.
#[derive(Debug)]
struct NoKeys;

impl KeyProvider for NoKeys {
    fn load_private_key(
        &self,
        _: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, Error> {
        Err(Error::General(
            "peerlet's TLS client loads no private keys".into(),
        ))
    }
}
