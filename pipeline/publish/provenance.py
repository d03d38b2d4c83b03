"""Provenance: C2PA content credentials for the finished MP4, and reading them back.

`sign_mp4` embeds a signed C2PA manifest (c2pa-python, fully offline: no timestamp authority, no
OCSP) that says the video was *created* by a trained algorithm (IPTC digital source type
`trainedAlgorithmicMedia`), by which generator (pack name and version), from which inputs (SHA-256
of the reference image and of the audio) and with which invisible-watermark payload. The manifest
covers the media bytes with a BMFF hash, so a single changed byte in `mdat` makes the credentials
`Invalid`; a re-encoded copy has no manifest at all (`None`) and only the watermark survives.

Keys. Either the user's own certificate chain and private key (`user_identity`), or by default a
local CA and a signing certificate generated once into the user's config folder (`local_identity`;
never into the output folder, never printed). C2PA refuses a self-signed signing certificate, hence
the two levels: a CA (CA:TRUE, keyCertSign) and a leaf it signed (CA:FALSE, digitalSignature, EKU
emailProtection). Nobody else trusts that local CA, so such files read back as `Valid` (untrusted)
unless the CA is given as a trust anchor, which turns them `Trusted`.

Manifest content (label -> data):

- `c2pa.actions` (written as `c2pa.actions.v2`): one action `c2pa.created` with
  `digitalSourceType` = `DIGITAL_SOURCE_TYPE`, `softwareAgent` = {name, version} of the generator
  and `when` = signing time (UTC, ISO 8601).
- `org.talkinghead.inputs`: {"reference_image_sha256", "audio_sha256"} (hex, or absent). These are
  hash-only records: c2pa ingredients need the ingredient file itself, which the video must not
  carry (it is the user's portrait).
- `org.talkinghead.watermark`: {"payload_hex"} (absent when no watermark was embedded).
- `claim_generator_info`: [{name, version}]; `title`: the file name (or `ProvenanceInfo.title`).

`cryptography` and `c2pa-python` are imported lazily, so the rest of the pipeline works without
them; a missing package is a `ToolError` that says what to install.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import stat
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from ..core.config_dir import CONFIG_DIR_ENV_VAR, default_config_dir
from ..core.content_hash import sha256_file
from ..core.errors import InputError, ToolError
from ..core.output_paths import atomic_write_path

#: IPTC digital source type of media made by a trained model.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: The C2PA action recorded for a generated video.
CREATED_ACTION = "c2pa.created"
#: Custom assertion with the input hashes.
INPUTS_LABEL = "org.talkinghead.inputs"
#: Custom assertion with the invisible-watermark payload.
WATERMARK_LABEL = "org.talkinghead.watermark"

#: Subfolder of the config folder that holds the local signing identity.
LOCAL_IDENTITY_DIRNAME = "c2pa-local-identity"
CA_CERT_FILE = "ca_cert.pem"
SIGNING_CHAIN_FILE = "signing_chain.pem"
SIGNING_KEY_FILE = "signing_key.pem"
#: Common names of the local default certificates (show up as signer / issuer when reading).
LOCAL_CA_NAME = "Talking Head local CA (untrusted)"
LOCAL_SIGNER_NAME = "Talking Head local signer"
#: Validity of the local certificates, days.
LOCAL_VALIDITY_DAYS = 3650

#: Signing algorithms c2pa accepts, by the name used here (= c2pa's string form).
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
#: Algorithms `local_identity` can generate.
LOCAL_ALGORITHMS = ("es256", "ed25519")

#: Manifest states `read_manifest` reports. "None": the file carries no manifest.
STATES = ("Trusted", "Valid", "Invalid", "None")

_INSTALL_HINT = "Install them with: pip install c2pa-python cryptography"


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file (read in 1 MiB chunks); e.g. the reference image or the audio file."""
    return sha256_file(path)


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _import_c2pa():
    try:
        import c2pa  # noqa: WPS433 (optional dependency, imported on use)
    except ImportError as exc:
        raise ToolError("c2pa-python", f"is not installed ({exc}). {_INSTALL_HINT}") from exc
    return c2pa


def _import_crypto():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    except ImportError as exc:
        raise ToolError("cryptography", f"is not installed ({exc}). {_INSTALL_HINT}") from exc
    return x509, hashes, serialization, ec, ed25519, rsa


def _require_file(path: Any, input_name: str, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise InputError(input_name, f"no {what} path was given", f"Give the path of the {what}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(input_name, f"file not found: {path!r}", f"Check the path of the {what}")
    if not os.path.isfile(path):
        raise InputError(input_name, f"{path!r} is not a file", f"Give the path of the {what} file")
    return path


def _read_bytes(path: str, input_name: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise InputError(input_name, f"cannot read {path!r} ({exc.strerror or exc})",
                         "Check the file's permissions") from exc


# ------------------------------------------------------------------------------------------------
# signing identities
# ------------------------------------------------------------------------------------------------


@dataclass
class SigningIdentity:
    """A certificate chain and private key to sign manifests with.

    Attributes:
        cert_chain_pem: PEM certificates, the signing (leaf) certificate first, then any
            intermediates (the root may be included; c2pa sends the chain inside the manifest).
        private_key_pem: PEM private key (PKCS#8 or traditional, unencrypted) of the leaf
            certificate. Kept out of `repr` so it never ends up in a log (the PEM fields all are).
        algorithm: c2pa signing algorithm, one of `ALGORITHMS` (e.g. "es256", "ed25519").
        source: "user" (the user's own certificate) or "local_default" (generated by
            `local_identity`; untrusted by everyone else).
        trust_anchor_pem: PEM of the CA to trust when verifying what this identity signed, if known
            (the local CA for "local_default"; the user's `trust_anchor_path` for "user").
    """

    cert_chain_pem: bytes = field(repr=False)
    private_key_pem: bytes = field(repr=False)
    algorithm: str
    source: str
    trust_anchor_pem: Optional[bytes] = field(default=None, repr=False)


def _key_algorithm(private_key: Any, input_name: str) -> str:
    _, _, _, ec, ed25519, rsa = _import_crypto()
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        alg = by_curve.get(private_key.curve.name)
        if alg:
            return alg
        problem = f"the EC curve {private_key.curve.name} is not supported by C2PA"
    elif isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size >= 2048:
            return "ps256"
        problem = f"an RSA key of {private_key.key_size} bits is too short"
    else:
        problem = f"a {type(private_key).__name__} key is not supported by C2PA"
    raise InputError(input_name, problem,
                     "Use an EC P-256/P-384/P-521, Ed25519 or RSA (>= 2048 bits) key")


def _load_certs(data: bytes, input_name: str, path: str) -> list:
    x509 = _import_crypto()[0]
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InputError(input_name, f"{path!r} holds no PEM certificate",
                         "Give a PEM file (text starting with '-----BEGIN CERTIFICATE-----')")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InputError(input_name, f"{path!r} is not a valid PEM certificate file ({exc})",
                         "Give a PEM file with the signing certificate first, then its issuers") from exc


def _public_der(public_key: Any) -> bytes:
    serialization = _import_crypto()[2]
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_self_signed(cert: Any) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # noqa: BLE001 (any failure means "not signed by itself")
        return False
    return True


def _check_leaf(leaf: Any, input_name: str) -> None:
    """Refuses what c2pa would refuse at signing time, with the reason."""
    x509 = _import_crypto()[0]
    if _is_self_signed(leaf):
        raise InputError(
            input_name,
            "the signing certificate is self-signed; C2PA rejects self-signed signing certificates",
            "Make a CA certificate, then a signing certificate issued by that CA (CA:FALSE, key usage "
            "digitalSignature, extended key usage emailProtection); give the signing certificate (and "
            "the CA as trust anchor), or leave the certificate empty to use the local default identity",
        )
    try:
        basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is not None and basic.ca:
        raise InputError(
            input_name, "the signing certificate is a CA certificate (CA:TRUE)",
            "Sign with a leaf certificate (CA:FALSE, digitalSignature) issued by your CA, "
            "not with the CA itself",
        )


def user_identity(cert_path: str, key_path: str, trust_anchor_path: Optional[str] = None,
                  *, cert_input: str = "certificate", key_input: str = "private_key",
                  anchor_input: str = "trust_anchor") -> SigningIdentity:
    """Loads the user's own signing certificate chain and key.

    Args:
        cert_path: PEM file, the signing certificate first, then intermediate CAs.
        key_path: PEM file with the (unencrypted) private key of the signing certificate.
        trust_anchor_path: optional PEM file with the root CA, used when verifying.
        cert_input, key_input, anchor_input: input names used in errors.
    Returns:
        SigningIdentity with source "user" and the algorithm matching the key.
    Raises:
        InputError: missing file, not PEM, encrypted or unsupported key, key does not match the
            certificate, self-signed or CA signing certificate.
        ToolError: `cryptography` is not installed.
    """
    _, _, serialization, _, _, _ = _import_crypto()
    cert_path = _require_file(cert_path, cert_input, "signing certificate")
    key_path = _require_file(key_path, key_input, "private key")
    cert_data = _read_bytes(cert_path, cert_input)
    certs = _load_certs(cert_data, cert_input, cert_path)
    leaf = certs[0]
    _check_leaf(leaf, cert_input)

    key_data = _read_bytes(key_path, key_input)
    if b"-----BEGIN" not in key_data or b"PRIVATE KEY-----" not in key_data:
        raise InputError(key_input, f"{key_path!r} holds no PEM private key",
                         "Give a PEM file (text starting with '-----BEGIN PRIVATE KEY-----')")
    try:
        private_key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError as exc:  # password protected
        raise InputError(key_input, f"{key_path!r} is encrypted (password protected)",
                         "Give an unencrypted key, e.g. `openssl pkey -in key.pem -out plain.pem`") from exc
    except Exception as exc:  # noqa: BLE001 (ValueError, UnsupportedAlgorithm, ...)
        raise InputError(key_input, f"{key_path!r} is not a valid PEM private key ({exc})",
                         "Give the PEM private key of the signing certificate") from exc
    algorithm = _key_algorithm(private_key, key_input)
    if _public_der(private_key.public_key()) != _public_der(leaf.public_key()):
        raise InputError(key_input, "the private key does not match the signing certificate",
                         "Give the key the signing certificate was issued for (the first "
                         f"certificate in {os.path.basename(cert_path)!r})")

    anchor_pem = None
    if trust_anchor_path:
        trust_anchor_path = _require_file(trust_anchor_path, anchor_input, "trust anchor (CA certificate)")
        anchor_pem = _read_bytes(trust_anchor_path, anchor_input)
        _load_certs(anchor_pem, anchor_input, trust_anchor_path)
    serialization_pem = serialization.Encoding.PEM
    chain_pem = b"".join(cert.public_bytes(serialization_pem) for cert in certs)
    # Re-serialise the key as unencrypted PKCS#8, the form c2pa reads for every key type.
    key_pem = private_key.private_bytes(serialization_pem, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    return SigningIdentity(chain_pem, key_pem, algorithm, "user", anchor_pem)


def _generate_key(algorithm: str):
    _, _, _, ec, ed25519, _ = _import_crypto()
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _generate_local_pems(algorithm: str) -> Dict[str, bytes]:
    """A CA and a leaf signed by it; returns {file name: PEM}. The CA key is discarded."""
    x509, hashes, serialization, _, _, _ = _import_crypto()
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Talking Head (local)")])

    def usage(**flags):
        names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{n: flags.get(n, False) for n in names})

    # Ed25519 signatures take no hash; EC takes SHA-256.
    digest = None if algorithm == "ed25519" else hashes.SHA256()
    now = _utc_now()
    not_before, not_after = now - _dt.timedelta(days=1), now + _dt.timedelta(days=LOCAL_VALIDITY_DAYS)

    ca_key = _generate_key(algorithm)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name(LOCAL_CA_NAME)).issuer_name(name(LOCAL_CA_NAME))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, digest)
    )
    leaf_key = _generate_key(algorithm)
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(name(LOCAL_SIGNER_NAME)).issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, digest)
    )
    pem = serialization.Encoding.PEM
    return {
        CA_CERT_FILE: ca_cert.public_bytes(pem),
        SIGNING_CHAIN_FILE: leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem),
        SIGNING_KEY_FILE: leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()),
    }


def _write_private(path: str, data: bytes) -> None:
    """Creates `path` with mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)  # in case the umask or the platform widened it


def _load_local(folder: str) -> SigningIdentity:
    _, _, serialization, _, _, _ = _import_crypto()
    name = "config folder"
    try:
        chain = _read_bytes(os.path.join(folder, SIGNING_CHAIN_FILE), name)
        key_pem = _read_bytes(os.path.join(folder, SIGNING_KEY_FILE), name)
        ca_pem = _read_bytes(os.path.join(folder, CA_CERT_FILE), name)
        certs = _load_certs(chain, name, os.path.join(folder, SIGNING_CHAIN_FILE))
        _load_certs(ca_pem, name, os.path.join(folder, CA_CERT_FILE))
        key = serialization.load_pem_private_key(key_pem, password=None)
        algorithm = _key_algorithm(key, name)
        if _public_der(key.public_key()) != _public_der(certs[0].public_key()):
            raise ValueError("the key does not match the certificate")
    except (InputError, ValueError, TypeError) as exc:
        raise InputError(
            name, f"the local signing identity in {folder!r} is damaged ({exc})",
            "Delete that folder; a new local identity is made on the next run",
        ) from exc
    return SigningIdentity(chain, key_pem, algorithm, "local_default", ca_pem)


def local_identity(config_dir: Optional[str] = None, algorithm: str = "es256") -> SigningIdentity:
    """The local default signing identity, generated on first use and reused afterwards.

    Files (in `<config_dir>/c2pa-local-identity/`, folder mode 0700): `ca_cert.pem` (the local CA,
    give it as trust anchor to see `Trusted`), `signing_chain.pem` (leaf + CA) and
    `signing_key.pem` (mode 0600). The CA's private key is thrown away right after it signed the
    leaf, so nothing else can ever be issued under it. The folder is built under a temporary name
    and renamed into place in one step: a crash leaves no half identity, and when two processes
    race, the first rename wins and both use its files. Keys are never printed or logged.

    Args:
        config_dir: the config folder; default `default_config_dir()`.
        algorithm: "es256" (default) or "ed25519"; only used when the identity is first made.
    Returns:
        SigningIdentity with source "local_default" and the local CA as trust anchor.
    Raises:
        InputError: the config folder cannot be written, or the stored identity is damaged.
        ToolError: `cryptography` is not installed.
    """
    if algorithm not in LOCAL_ALGORITHMS:
        raise InputError("algorithm", f"{algorithm!r} is not one of {list(LOCAL_ALGORITHMS)}",
                         "Use 'es256' or 'ed25519' for the local identity")
    config_dir = os.path.abspath(config_dir or default_config_dir())
    folder = os.path.join(config_dir, LOCAL_IDENTITY_DIRNAME)
    if os.path.isdir(folder):
        return _load_local(folder)

    pems = _generate_local_pems(algorithm)
    try:
        os.makedirs(config_dir, mode=0o700, exist_ok=True)
        temp = tempfile.mkdtemp(prefix=f".{LOCAL_IDENTITY_DIRNAME}.", dir=config_dir)  # mode 0700
    except OSError as exc:
        raise InputError("config folder", f"cannot write to {config_dir!r} ({exc.strerror or exc})",
                         f"Make it writable, or set {CONFIG_DIR_ENV_VAR} to a writable folder") from exc
    try:
        for file_name, data in pems.items():
            _write_private(os.path.join(temp, file_name), data)
        for file_name in (CA_CERT_FILE, SIGNING_CHAIN_FILE):  # certificates are public
            os.chmod(os.path.join(temp, file_name), 0o644)
        try:
            os.rename(temp, folder)  # atomic; fails if another process got there first
        except OSError:
            if not os.path.isdir(folder):
                raise
    except OSError as exc:
        raise InputError("config folder", f"cannot write to {config_dir!r} ({exc.strerror or exc})",
                         f"Make it writable, or set {CONFIG_DIR_ENV_VAR} to a writable folder") from exc
    finally:
        if os.path.isdir(temp):
            shutil.rmtree(temp, ignore_errors=True)
    return _load_local(folder)


# ------------------------------------------------------------------------------------------------
# MP4 checks
# ------------------------------------------------------------------------------------------------


def _top_level_boxes(path: str) -> List[tuple]:
    """[(type, offset, size)] of the top-level ISO-BMFF boxes; ValueError if the layout is broken."""
    boxes = []
    total = os.path.getsize(path)
    with open(path, "rb") as handle:
        offset = 0
        while offset < total:
            handle.seek(offset)
            header = handle.read(8)
            if len(header) < 8:
                raise ValueError(f"truncated box header at byte {offset}")
            size, kind = struct.unpack(">I4s", header)
            header_size = 8
            if size == 1:
                large = handle.read(8)
                if len(large) < 8:
                    raise ValueError(f"truncated box header at byte {offset}")
                size = struct.unpack(">Q", large)[0]
                header_size = 16
            elif size == 0:
                size = total - offset
            if size < header_size or offset + size > total:
                raise ValueError(f"box {kind!r} at byte {offset} runs past the end of the file")
            boxes.append((kind.decode("latin-1"), offset, size))
            offset += size
    return boxes


def _check_mp4(path: str, input_name: str) -> List[tuple]:
    path = _require_file(path, input_name, "MP4")
    fix = "Give a complete, non-fragmented MP4 as written by Mux"
    with open(path, "rb") as handle:
        head = handle.read(12)
    if len(head) < 12 or head[4:8] != b"ftyp":
        raise InputError(input_name, f"{path!r} is not an MP4 file (no 'ftyp' box at the start)", fix)
    try:
        boxes = _top_level_boxes(path)
    except ValueError as exc:
        raise InputError(input_name, f"{path!r} is a damaged MP4 ({exc})", fix) from exc
    kinds = {kind for kind, _, _ in boxes}
    if "moof" in kinds:
        raise InputError(input_name, f"{path!r} is a fragmented MP4, which C2PA signing does not support",
                         "Write it without fragmentation (no -movflags frag_keyframe / dash)")
    if "moov" not in kinds or "mdat" not in kinds:
        raise InputError(input_name, f"{path!r} is an incomplete MP4 (no 'moov' or 'mdat' box)", fix)
    return boxes


# ------------------------------------------------------------------------------------------------
# signing
# ------------------------------------------------------------------------------------------------


@dataclass
class ProvenanceInfo:
    """What the manifest says about how the video was made.

    Attributes:
        generator_name: the software that made the video (e.g. "Talking Head").
        generator_version: its version (e.g. "0.1.0").
        reference_image_sha256: hex SHA-256 of the reference portrait file, or None.
        audio_sha256: hex SHA-256 of the speech audio, or None.
        watermark_payload_hex: hex of the invisible-watermark payload embedded in the frames, or
            None if no watermark was embedded.
        title: manifest title; "" = the file's base name.
    """

    generator_name: str
    generator_version: str
    reference_image_sha256: Optional[str] = None
    audio_sha256: Optional[str] = None
    watermark_payload_hex: Optional[str] = None
    title: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SignResult:
    """Outcome of `sign_mp4`.

    Attributes:
        manifest_label: the active manifest's label ("urn:c2pa:<uuid>"), None when not signed.
        signed: whether the file now carries the manifest.
        notes: human-readable remarks (e.g. that the local identity is untrusted).
        signer_source: "user" or "local_default" ("" when not signed).
        algorithm: signing algorithm used ("" when not signed).
    """

    manifest_label: Optional[str]
    signed: bool
    notes: List[str] = field(default_factory=list)
    signer_source: str = ""
    algorithm: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _check_hex(value: Optional[str], input_name: str, length: Optional[int] = None) -> Optional[str]:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    try:
        bytes.fromhex(text)
    except ValueError as exc:
        raise InputError(input_name, f"{value!r} is not a hex string", "Give it as hex digits") from exc
    if length is not None and len(text) != length:
        raise InputError(input_name, f"{value!r} has {len(text)} hex digits, not {length}",
                         "Give the full SHA-256 (64 hex digits)")
    return text


def build_manifest(info: ProvenanceInfo, title: str, when: Optional[_dt.datetime] = None) -> dict:
    """The manifest definition `sign_mp4` signs (see the module docstring for its content)."""
    when = when or _utc_now()
    agent = {"name": info.generator_name, "version": info.generator_version}
    inputs = {}
    ref = _check_hex(info.reference_image_sha256, "reference_image_sha256", 64)
    audio = _check_hex(info.audio_sha256, "audio_sha256", 64)
    if ref:
        inputs["reference_image_sha256"] = ref
    if audio:
        inputs["audio_sha256"] = audio
    assertions: List[dict] = [
        {"label": "c2pa.actions", "data": {"actions": [{
            "action": CREATED_ACTION,
            "digitalSourceType": DIGITAL_SOURCE_TYPE,
            "softwareAgent": agent,
            "when": when.isoformat(),
        }]}},
        {"label": INPUTS_LABEL, "data": inputs},
    ]
    payload = _check_hex(info.watermark_payload_hex, "watermark_payload_hex")
    if payload:
        assertions.append({"label": WATERMARK_LABEL, "data": {"payload_hex": payload}})
    return {
        "claim_generator_info": [dict(agent)],
        "title": title,
        "format": "video/mp4",
        "assertions": assertions,
    }


def _c2pa_message(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc).strip() or type(exc).__name__


def sign_mp4(path: str, info: ProvenanceInfo, identity: Optional[SigningIdentity] = None, *,
             input_name: str = "path", missing_ok: bool = False) -> SignResult:
    """Embeds a signed C2PA manifest in an MP4, in place and atomically.

    The signed copy is written to a hidden temporary file in the same folder, read back and checked,
    and only then renamed over `path` (its permission bits are kept). On any failure the temporary
    file is deleted and `path` is untouched.

    Args:
        path: the MP4 to sign (complete, not fragmented; e.g. the output of `mux`).
        info: what the manifest records (see `ProvenanceInfo`).
        identity: the signing identity; default `local_identity()` (untrusted, noted in the result).
        input_name: the input to name in errors about `path`.
        missing_ok: if c2pa-python / cryptography are not installed, return
            SignResult(signed=False) with a note instead of raising ToolError.
    Returns:
        SignResult with the manifest label.
    Raises:
        InputError: `path` is missing, not an MP4, fragmented or damaged; a hash in `info` is not
            hex; the identity was refused by c2pa (the reason is in the message).
        ToolError: c2pa-python or cryptography is missing (unless `missing_ok`).
    """
    try:
        c2pa = _import_c2pa()
        _import_crypto()
    except ToolError as exc:
        if missing_ok:
            return SignResult(None, False, [f"not signed: {exc}"])
        raise
    _check_mp4(path, input_name)
    path = os.fspath(path)
    if identity is None:
        identity = local_identity()
    if identity.algorithm not in ALGORITHMS:
        raise InputError("algorithm", f"{identity.algorithm!r} is not one of {list(ALGORITHMS)}",
                         "Use an algorithm C2PA supports")
    manifest = build_manifest(info, info.title or os.path.basename(path))

    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            identity.algorithm, identity.cert_chain_pem, identity.private_key_pem, None))
    except c2pa.C2paError as exc:
        raise InputError("certificate", f"C2PA refused the signing identity ({_c2pa_message(exc)})",
                         "Check that the certificate chain and key belong together and that the "
                         "signing certificate is CA:FALSE with digitalSignature") from exc

    mode = stat.S_IMODE(os.stat(path).st_mode)
    with atomic_write_path(path, input_name) as temp_path:
        try:
            with signer, c2pa.Builder(manifest) as builder:
                with open(path, "rb") as source, open(temp_path, "w+b") as dest:
                    builder.sign(signer, "video/mp4", source, dest)
        except c2pa.C2paError as exc:
            message = _c2pa_message(exc)
            if "certificate" in message.lower() or "signature" in message.lower():
                raise InputError("certificate", f"C2PA refused to sign with this identity ({message})",
                                 "Use a leaf certificate (CA:FALSE, digitalSignature, EKU "
                                 "emailProtection) issued by a CA, with its matching key") from exc
            raise InputError(input_name, f"{path!r} could not be signed ({message})",
                             "Give a complete, non-fragmented MP4 as written by Mux") from exc
        report = read_manifest(temp_path, identity.trust_anchor_pem, input_name=input_name)
        if report.state not in ("Valid", "Trusted"):
            raise InputError(input_name, f"the signed copy of {path!r} does not verify "
                             f"({report.state}: {'; '.join(report.validation_errors)})",
                             "Give a complete, non-fragmented MP4 as written by Mux")
        os.chmod(temp_path, mode)
    notes = []
    if identity.source == "local_default":
        notes.append(
            "signed with the local default identity (a CA made on this computer): verifiers report "
            "the credentials as Valid but untrusted. Supply your own certificate and key to be trusted.")
    return SignResult(report.manifest_label, True, notes, identity.source, identity.algorithm)


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


@dataclass
class ManifestReport:
    """What `read_manifest` found.

    Attributes:
        state: "Trusted" (valid and the signer chains to the given trust anchor), "Valid" (intact
            and correctly signed, signer not trusted), "Invalid" (the media or the manifest was
            changed, or the signature is bad) or "None" (no manifest, e.g. a re-encoded copy).
        summary: generator, generator_name, generator_version, actions, digital_source_type,
            reference_image_sha256, audio_sha256, watermark_payload_hex, signer, issuer,
            algorithm, signing_time, title (missing values are None; {} for state "None").
        validation_errors: what made it Invalid, as "code: explanation" (c2pa validation codes,
            e.g. "assertion.bmffHash.mismatch: ..."); empty for Valid / Trusted / None.
        manifest_label: the active manifest's label, or None.
        trust_anchor_given: whether a trust anchor was used.
        trust_notes: why the signer is not trusted ("signingCredential.untrusted: ..."), kept
            apart from the errors: an untrusted signer alone still reads Valid.
    """

    state: str
    summary: Dict[str, Any] = field(default_factory=dict)
    validation_errors: List[str] = field(default_factory=list)
    manifest_label: Optional[str] = None
    trust_anchor_given: bool = False
    trust_notes: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> List[str]:
        """Human-readable lines for `talkinghead verify`."""
        if self.state == "None":
            return ["Content credentials: none (no C2PA manifest; a re-encoded or edited copy loses it)"]
        qualifier = {"Valid": " (untrusted: signer not in a given trust anchor)"
                     if self.trust_anchor_given else " (untrusted: no trust anchor given)"}
        lines = [f"Content credentials: {self.state}{qualifier.get(self.state, '')}"]
        s = self.summary
        for label, key in (("generator", "generator"), ("action", "actions"),
                           ("digital source type", "digital_source_type"),
                           ("reference image sha256", "reference_image_sha256"),
                           ("audio sha256", "audio_sha256"),
                           ("watermark payload", "watermark_payload_hex"), ("signer", "signer"),
                           ("issuer", "issuer"), ("signed at", "signing_time")):
            value = s.get(key)
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            if value:
                lines.append(f"  {label}: {value}")
        lines.extend(f"  error: {e}" for e in self.validation_errors)
        return lines


def _assertion(manifest: dict, label: str) -> Optional[dict]:
    for item in manifest.get("assertions", []) or []:
        item_label = item.get("label", "")
        if item_label == label or item_label.startswith(label + ".v") or item_label.startswith(label + "__"):
            return item.get("data") or {}
    return None


def _summary(manifest: dict) -> Dict[str, Any]:
    actions = (_assertion(manifest, "c2pa.actions") or {}).get("actions", []) or []
    created = next((a for a in actions if a.get("action") == CREATED_ACTION), actions[0] if actions else {})
    agent = created.get("softwareAgent") or {}
    if isinstance(agent, str):
        agent = {"name": agent}
    generator_info = (manifest.get("claim_generator_info") or [{}])[0]
    name = agent.get("name") or generator_info.get("name")
    version = agent.get("version") or generator_info.get("version")
    inputs = _assertion(manifest, INPUTS_LABEL) or {}
    watermark = _assertion(manifest, WATERMARK_LABEL) or {}
    signature = manifest.get("signature_info") or {}
    return {
        "title": manifest.get("title"),
        "generator": " ".join(p for p in (name, version) if p) or None,
        "generator_name": name,
        "generator_version": version,
        "actions": [a.get("action") for a in actions],
        "digital_source_type": created.get("digitalSourceType"),
        "reference_image_sha256": inputs.get("reference_image_sha256"),
        "audio_sha256": inputs.get("audio_sha256"),
        "watermark_payload_hex": watermark.get("payload_hex"),
        "signer": signature.get("common_name"),
        "issuer": signature.get("issuer"),
        "algorithm": signature.get("alg"),
        # A timestamp authority's time when there is one (never, offline), else the action's time.
        "signing_time": signature.get("time") or created.get("when"),
    }


#: Validation codes about trust only: the manifest is intact, the signer just is not trusted.
_TRUST_CODES = ("signingCredential.untrusted",)


def _failures(results: Optional[dict]) -> tuple:
    """(errors, trust_notes) from c2pa's validation_results, as "code: explanation" strings."""
    errors, trust = [], []
    for entry in ((results or {}).get("activeManifest") or {}).get("failure", []) or []:
        code, text = entry.get("code", ""), entry.get("explanation", "")
        (trust if code in _TRUST_CODES else errors).append(f"{code}: {text}" if text else code)
    return errors, trust


#: Extensions of ISO-BMFF files: these must start with an 'ftyp' box to be read at all.
_BMFF_EXTENSIONS = (".mp4", ".m4v", ".m4a", ".mov")


def read_manifest(path: str, trust_anchor_pem: Optional[bytes] = None, *,
                  input_name: str = "path") -> ManifestReport:
    """Reads and validates the C2PA manifest of a media file (offline).

    Args:
        path: the file (MP4, or any format c2pa-python reads).
        trust_anchor_pem: PEM of CA certificate(s) to trust; with it a correctly signed file
            whose signer chains to one of them reads "Trusted".
        input_name: the input to name in errors.
    Returns:
        ManifestReport; state "None" when the file has no manifest.
    Raises:
        InputError: the file is missing or its format is not supported.
        ToolError: c2pa-python is not installed.
    """
    c2pa = _import_c2pa()
    path = _require_file(path, input_name, "media file")
    if path.lower().endswith(_BMFF_EXTENSIONS):
        with open(path, "rb") as handle:
            head = handle.read(12)
        if len(head) < 12 or head[4:8] != b"ftyp":
            raise InputError(input_name, f"{path!r} is not an MP4 file (no 'ftyp' box at the start)",
                             "Give the MP4 to verify")
    context = None
    if trust_anchor_pem:
        anchor = trust_anchor_pem
        if isinstance(anchor, bytes):
            anchor = anchor.decode("ascii", errors="replace")
        if "-----BEGIN CERTIFICATE-----" not in anchor:
            raise InputError("trust_anchor", "holds no PEM certificate",
                             "Give the CA certificate as PEM ('-----BEGIN CERTIFICATE-----')")
        settings = c2pa.Settings.from_dict({"trust": {"trust_anchors": anchor},
                                            "verify": {"verify_trust": True}})
        context = c2pa.Context(settings=settings)
    try:
        reader = c2pa.Reader.try_create(path, context=context) if context else c2pa.Reader.try_create(path)
    except c2pa.C2paError.NotSupported as exc:
        raise InputError(input_name, f"{path!r} is not a format C2PA can read ({_c2pa_message(exc)})",
                         "Give an MP4 (or another C2PA-supported media file)") from exc
    except c2pa.C2paError as exc:
        # The file has C2PA data that cannot even be parsed: tampered with or damaged.
        return ManifestReport("Invalid", {}, [_c2pa_message(exc)], None, bool(trust_anchor_pem))
    if reader is None:
        return ManifestReport("None", {}, [], None, bool(trust_anchor_pem))
    with reader:
        data = json.loads(reader.json())
        state = data.get("validation_state") or "Invalid"
        results = data.get("validation_results")
        label = data.get("active_manifest")
        manifest = (data.get("manifests") or {}).get(label) or {}
    errors, trust_notes = _failures(results)
    if state not in STATES:
        state = "Invalid"
    return ManifestReport(state, _summary(manifest), errors, label, bool(trust_anchor_pem), trust_notes)


#: The user's own signing files, looked for in <config folder>/USER_IDENTITY_DIR: the certificate
#: chain (leaf first), its private key, and optionally the CA to report as the trust anchor.
USER_IDENTITY_DIR = "c2pa-user"
USER_CERT_FILE, USER_KEY_FILE, USER_ANCHOR_FILE = "certificate.pem", "private_key.pem", "trust_anchor.pem"


def configured_identity(config_dir: Optional[str] = None) -> Optional[SigningIdentity]:
    """The user's identity from <config>/c2pa-user/ (certificate.pem + private_key.pem, optional
    trust_anchor.pem), or None when they have not put one there (then the local default is used)."""
    folder = os.path.join(config_dir or default_config_dir(), USER_IDENTITY_DIR)
    cert, key = os.path.join(folder, USER_CERT_FILE), os.path.join(folder, USER_KEY_FILE)
    if not (os.path.isfile(cert) and os.path.isfile(key)):
        return None
    anchor = os.path.join(folder, USER_ANCHOR_FILE)
    return user_identity(cert, key, anchor if os.path.isfile(anchor) else None)
