"""Provenance: real c2pa-python signing and validation of a real (tiny) MP4 made by `mux`, offline.

One unsigned clip is muxed per module (25 frames 64x64 + 1 s tone); every test signs a fresh copy.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat

import numpy as np
import pytest

pytest.importorskip("c2pa")
pytest.importorskip("cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from talkinghead.pipeline.core.audio import AudioClip  # noqa: E402
from talkinghead.pipeline.core.errors import InputError, ToolError  # noqa: E402
from talkinghead.pipeline.core.ffmpeg import run_ffmpeg  # noqa: E402
from talkinghead.pipeline.publish import provenance  # noqa: E402
from talkinghead.pipeline.publish.mux import mux  # noqa: E402
from talkinghead.pipeline.publish.provenance import (  # noqa: E402
                                                     DIGITAL_SOURCE_TYPE,
                                                     ProvenanceInfo,
                                                     file_sha256,
                                                     local_identity,
                                                     read_manifest,
                                                     sign_mp4,
                                                     user_identity,
                                                     )

REF_SHA = "ab" * 32
AUDIO_SHA = "cd" * 32
PAYLOAD = "0123456789abcdef"
INFO = ProvenanceInfo("Talking Head", "0.1.0", REF_SHA, AUDIO_SHA, PAYLOAD)


# ------------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unsigned_mp4(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("unsigned")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(25, 64, 64, 3), dtype=np.uint8)
    sr = 16000
    t = np.arange(sr) / sr
    audio = AudioClip((0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), sr)
    path = str(folder / "unsigned.mp4")
    mux(frames, audio, 25, path)
    return path


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    """The local default identity, made once in a private config folder."""
    return local_identity(str(tmp_path_factory.mktemp("config")))


@pytest.fixture()
def clip(unsigned_mp4, tmp_path) -> str:
    """A fresh unsigned copy in its own output folder."""
    out = tmp_path / "output"
    out.mkdir()
    path = str(out / "clip.mp4")
    shutil.copyfile(unsigned_mp4, path)
    return path


def top_level_box(path: str, kind: str):
    for name, offset, size in provenance._top_level_boxes(path):
        if name == kind:
            return offset, size
    raise AssertionError(f"no {kind} box in {path}")


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0xFF]))


def write(path, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


def self_signed(tmp_path):
    """A self-signed EC certificate (CA:FALSE) and its key, as files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = write(tmp_path / "self.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_path = write(tmp_path / "self.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def identity_files(config_dir: str):
    folder = os.path.join(config_dir, provenance.LOCAL_IDENTITY_DIRNAME)
    return (os.path.join(folder, provenance.SIGNING_CHAIN_FILE),
            os.path.join(folder, provenance.SIGNING_KEY_FILE),
            os.path.join(folder, provenance.CA_CERT_FILE))


# ------------------------------------------------------------------------------------------------
# sign + read
# ------------------------------------------------------------------------------------------------


def test_signed_clip_reads_valid_untrusted_and_trusted_with_the_ca(clip, identity):
    mode_before = stat.S_IMODE(os.stat(clip).st_mode)
    result = sign_mp4(clip, INFO, identity)
    assert result.signed and result.manifest_label.startswith("urn:c2pa:")
    assert result.signer_source == "local_default" and result.algorithm == "es256"
    assert any("untrusted" in note for note in result.notes)
    assert os.listdir(os.path.dirname(clip)) == ["clip.mp4"]  # no temp file, no keys
    assert stat.S_IMODE(os.stat(clip).st_mode) == mode_before

    report = read_manifest(clip)
    assert report.state == "Valid"
    assert report.validation_errors == []
    assert report.trust_notes and report.trust_notes[0].startswith("signingCredential.untrusted")
    assert report.manifest_label == result.manifest_label
    s = report.summary
    assert s["generator"] == "Talking Head 0.1.0"
    assert (s["generator_name"], s["generator_version"]) == ("Talking Head", "0.1.0")
    assert s["actions"] == ["c2pa.created"]
    assert s["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert s["reference_image_sha256"] == REF_SHA
    assert s["audio_sha256"] == AUDIO_SHA
    assert s["watermark_payload_hex"] == PAYLOAD
    assert s["signer"] == provenance.LOCAL_SIGNER_NAME
    assert s["issuer"]
    assert s["title"] == "clip.mp4"
    assert dt.datetime.fromisoformat(s["signing_time"]).tzinfo is not None
    text = "\n".join(report.describe())
    assert "Valid (untrusted" in text and PAYLOAD in text and "trainedAlgorithmicMedia" in text

    trusted = read_manifest(clip, trust_anchor_pem=identity.trust_anchor_pem)
    assert trusted.state == "Trusted"
    assert trusted.validation_errors == [] and trusted.trust_notes == []
    assert trusted.summary == report.summary


def test_another_ca_as_anchor_leaves_it_valid_untrusted(clip, identity, tmp_path):
    sign_mp4(clip, INFO, identity)
    other = local_identity(str(tmp_path / "other-config"))
    report = read_manifest(clip, trust_anchor_pem=other.trust_anchor_pem)
    assert report.state == "Valid" and report.trust_anchor_given and report.trust_notes


def test_flipped_media_byte_makes_it_invalid(clip, identity):
    sign_mp4(clip, INFO, identity)
    offset, size = top_level_box(clip, "mdat")
    flip_byte(clip, offset + size // 2)
    report = read_manifest(clip, trust_anchor_pem=identity.trust_anchor_pem)
    assert report.state == "Invalid"
    assert any(e.startswith("assertion.bmffHash.mismatch") for e in report.validation_errors)
    assert "Invalid" in report.describe()[0]


def test_reencoded_copy_has_no_manifest(clip, identity, tmp_path):
    sign_mp4(clip, INFO, identity)
    copy = str(tmp_path / "reencoded.mp4")
    run_ffmpeg(["-i", clip, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-y", copy])
    report = read_manifest(copy)
    assert report.state == "None"
    assert report.summary == {} and report.validation_errors == []
    assert "none" in report.describe()[0]


def test_ed25519_and_minimal_info(clip, tmp_path):
    ident = local_identity(str(tmp_path / "cfg"), algorithm="ed25519")
    assert ident.algorithm == "ed25519"
    sign_mp4(clip, ProvenanceInfo("Talking Head", "0.1.0"), ident)
    report = read_manifest(clip, ident.trust_anchor_pem)
    assert report.state == "Trusted"
    s = report.summary
    assert s["reference_image_sha256"] is None and s["audio_sha256"] is None
    assert s["watermark_payload_hex"] is None


def test_file_sha256(tmp_path):
    import hashlib

    path = write(tmp_path / "x.bin", b"abc")
    assert file_sha256(path) == hashlib.sha256(b"abc").hexdigest()


# ------------------------------------------------------------------------------------------------
# local identity
# ------------------------------------------------------------------------------------------------


def test_local_identity_made_once_in_config_dir_never_in_output(clip, tmp_path, monkeypatch):
    config = tmp_path / "config"
    monkeypatch.setenv("TALKINGHEAD_CONFIG_DIR", str(config))
    assert provenance.default_config_dir() == str(config)
    result = sign_mp4(clip, INFO)  # default identity: generated now
    assert result.signed and result.signer_source == "local_default"
    assert os.listdir(os.path.dirname(clip)) == ["clip.mp4"]

    chain, key, ca = identity_files(str(config))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(key)).st_mode) == 0o700
    assert sorted(os.listdir(config)) == [provenance.LOCAL_IDENTITY_DIRNAME]  # no temp folder left
    before = {p: (open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in (chain, key, ca)}

    first, second = local_identity(), local_identity()
    after = {p: (open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in (chain, key, ca)}
    assert before == after
    assert first.private_key_pem == second.private_key_pem == before[key][0]
    assert first.trust_anchor_pem == before[ca][0]
    assert b"PRIVATE KEY" not in repr(first).encode()
    assert read_manifest(clip, first.trust_anchor_pem).state == "Trusted"


def test_default_config_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv("TALKINGHEAD_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert provenance.default_config_dir() == str(tmp_path / "xdg" / "talkinghead")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert provenance.default_config_dir() == str(tmp_path / "home" / ".config" / "talkinghead")


def test_damaged_local_identity_is_an_input_error(tmp_path):
    config = str(tmp_path / "cfg")
    local_identity(config)
    _, key, _ = identity_files(config)
    write(key, b"garbage")
    with pytest.raises(InputError) as err:
        local_identity(config)
    assert err.value.input_name == "config folder" and "Delete" in err.value.fix


# ------------------------------------------------------------------------------------------------
# user identity
# ------------------------------------------------------------------------------------------------


def test_user_identity_signs_and_is_trusted_with_its_anchor(clip, tmp_path):
    config = str(tmp_path / "their-pki")
    local_identity(config)
    chain, key, ca = identity_files(config)
    ident = user_identity(chain, key, ca)
    assert ident.source == "user" and ident.algorithm == "es256" and ident.trust_anchor_pem
    result = sign_mp4(clip, INFO, ident)
    assert result.signer_source == "user" and result.notes == []
    assert read_manifest(clip, ident.trust_anchor_pem).state == "Trusted"


def test_user_identity_errors_name_the_input(tmp_path, identity):
    config = str(tmp_path / "pki")
    local_identity(config)
    chain, key, ca = identity_files(config)
    garbage = write(tmp_path / "garbage.pem", b"not a pem at all")
    broken = write(tmp_path / "broken.pem",
                   b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    other_key = write(tmp_path / "other.key", identity.private_key_pem)
    self_cert, self_key = self_signed(tmp_path)

    cases = [
        ((str(tmp_path / "missing.pem"), key), "certificate", "not found"),
        ((chain, str(tmp_path / "missing.key")), "private_key", "not found"),
        ((garbage, key), "certificate", "no PEM certificate"),
        ((broken, key), "certificate", "not a valid PEM"),
        ((chain, garbage), "private_key", "no PEM private key"),
        ((chain, other_key), "private_key", "does not match"),
        ((self_cert, self_key), "certificate", "self-signed"),
        ((ca, key), "certificate", "self-signed"),  # the CA itself is self-signed too
    ]
    for args, input_name, problem in cases:
        with pytest.raises(InputError) as err:
            user_identity(*args)
        assert err.value.input_name == input_name, args
        assert problem in err.value.problem, (args, err.value.problem)

    with pytest.raises(InputError) as err:
        user_identity(chain, key, garbage)
    assert err.value.input_name == "trust_anchor"


# ------------------------------------------------------------------------------------------------
# bad files
# ------------------------------------------------------------------------------------------------


def test_signing_a_missing_or_non_mp4_file_is_a_clear_error(tmp_path, identity):
    with pytest.raises(InputError) as err:
        sign_mp4(str(tmp_path / "nope.mp4"), INFO, identity)
    assert err.value.input_name == "path" and "not found" in err.value.problem

    wav = write(tmp_path / "audio.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40)
    with pytest.raises(InputError) as err:
        sign_mp4(wav, INFO, identity, input_name="video")
    assert err.value.input_name == "video" and "not an MP4" in err.value.problem
    assert os.listdir(tmp_path) == ["audio.wav"]


def test_failed_signing_leaves_nothing_behind(clip, identity):
    folder = os.path.dirname(clip)
    offset, size = top_level_box(clip, "moov")
    with open(clip, "r+b") as handle:  # box layout intact, moov contents garbage
        handle.seek(offset + 8)
        handle.write(b"\xff" * (size - 8))
    original = open(clip, "rb").read()
    with pytest.raises(InputError) as err:
        sign_mp4(clip, INFO, identity)
    assert err.value.input_name == "path" and "could not be signed" in err.value.problem
    assert os.listdir(folder) == ["clip.mp4"] and open(clip, "rb").read() == original

    with open(clip, "r+b") as handle:  # truncated
        handle.truncate(len(original) // 2)
    with pytest.raises(InputError, match="damaged"):
        sign_mp4(clip, INFO, identity)
    assert os.listdir(folder) == ["clip.mp4"]


def test_fragmented_mp4_is_refused(clip, identity, tmp_path):
    fragmented = str(tmp_path / "frag.mp4")
    run_ffmpeg(["-i", clip, "-c", "copy", "-movflags", "frag_keyframe+empty_moov", "-y", fragmented])
    with pytest.raises(InputError, match="fragmented"):
        sign_mp4(fragmented, INFO, identity)


def test_bad_hashes_are_input_errors(clip, identity):
    bad = ProvenanceInfo("Talking Head", "0.1.0", reference_image_sha256="xyz")
    with pytest.raises(InputError) as err:
        sign_mp4(clip, bad, identity)
    assert err.value.input_name == "reference_image_sha256"
    short = ProvenanceInfo("Talking Head", "0.1.0", audio_sha256="abcd")
    with pytest.raises(InputError) as err:
        sign_mp4(clip, short, identity)
    assert err.value.input_name == "audio_sha256"


def test_reading_a_missing_or_garbage_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_manifest(str(tmp_path / "nope.mp4"))
    garbage = write(tmp_path / "garbage.mp4", b"this is not a video")
    with pytest.raises(InputError, match="not an MP4"):
        read_manifest(garbage)


def test_missing_c2pa_is_reported(clip, identity, monkeypatch):
    def missing():
        raise ToolError("c2pa-python", "is not installed")

    monkeypatch.setattr(provenance, "_import_c2pa", missing)
    result = sign_mp4(clip, INFO, identity, missing_ok=True)
    assert not result.signed and result.manifest_label is None and "not installed" in result.notes[0]
    with pytest.raises(ToolError):
        sign_mp4(clip, INFO, identity)
