"""The `talkinghead` command.

    talkinghead demo [--out DIR] [--text TEXT]
    talkinghead run WORKFLOW_API.json [--set NODE_ID.input=value ...] [--server URL] [--out DIR] [--input DIR]
    talkinghead speak TEXT [-o speech.wav] [--voice V] [--rate-wpm N] [--pitch N] [--timings speech.json]
    talkinghead visemes AUDIO [--text T] [--fps F] [--format json|rhubarb] [-o OUT] [--preview PNG]
                        [--recogniser auto|whisper|pocketsphinx] [--whisper-model DIR]
    talkinghead reference IMAGE --consent [--face-index N] [--vae PATH] [-o NAME] [--preview PNG]
    talkinghead artifacts VIDEO [--reference REF.json] [--track TRACK.json] [-o report.json] [--plot PNG]
    talkinghead verify FILE [--trust-anchor CA.pem]
    talkinghead prompt TEXT [--negative N] [--preset P] [--budget 77] [--no-infer] [--rules FILE] [--llm DIR] [--json]
    talkinghead batch JOBS.jsonl --workflow WORKFLOW_API.json [--out DIR] [--workers N | --ray auto|local|ADDR | --server URL ...] [--consent]
    talkinghead voices

Exit status: 0 success, 1 a node failed (verify: neither credentials nor watermark found), 2 bad command line or the workflow was refused,
3 the ComfyUI server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from .command_line import UsageError, load_api_workflow

EXIT_NODE_FAILED = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows" / "api"
DEMO_WORKFLOW = "script_to_video.api.json"


def _parse_set(assignments: list[str], graph: dict) -> dict:
    """Applies `NODE_ID.input=value` overrides; values parse as JSON when they can, else stay text."""
    for assignment in assignments:
        target, separator, raw_value = assignment.partition("=")
        node_id, dot, input_name = target.rpartition(".")
        if not separator or not dot or not node_id or not input_name:
            raise UsageError(f"--set {assignment!r}: expected NODE_ID.input=value, for example --set 3.fps=30")
        if node_id not in graph:
            raise UsageError(f"--set {assignment!r}: the workflow has no node {node_id!r} "
                             f"(its nodes: {', '.join(sorted(graph, key=lambda n: (len(n), n)))})")
        try:
            value: Any = json.loads(raw_value)
        except json.JSONDecodeError:
            value = raw_value
        graph[node_id].setdefault("inputs", {})[input_name] = value
    return graph


def _summarise_outputs(outputs: dict, files: list[str]) -> None:
    for node_outputs in outputs.values():
        for report in node_outputs.get("talkinghead_mux", []) or []:
            print(
                f"  {report.get('frame_count')} frames at {report.get('fps'):.3f} fps, {report.get('duration_s'):.2f} s; "
                f"A/V offset {report.get('av_offset_ms'):+.1f} ms, duration difference "
                f"{report.get('duration_diff_ms'):+.1f} ms"
            )
            for note in report.get("notes", []) or []:
                print(f"  note: {note}")
    for path in files:
        print(f"Wrote {path}")


def _local_output_files(outputs: dict, out_dir: str) -> list[str]:
    files = []
    for node_outputs in outputs.values():
        for key in ("images", "gifs", "video", "audio"):
            for info in node_outputs.get(key, []) or []:
                if isinstance(info, dict) and info.get("type") == "output":
                    files.append(os.path.join(out_dir, info.get("subfolder", ""), info["filename"]))
    return files


def run_workflow(graph: dict, *, server: Optional[str], out_dir: str, input_dir: str, progress: bool = True) -> int:
    from .executor import GraphValidationError, NodeExecutionError, format_validation_errors

    try:
        if server:
            from .client import ComfyClient, ServerUnreachable

            try:
                run = ComfyClient(server).run(graph, out_dir=out_dir, progress=progress)
            except ServerUnreachable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_UNREACHABLE
            _summarise_outputs(run.outputs, run.files)
            if run.node_errors:
                error = {"message": "ComfyUI refused part of the workflow (it ran the valid outputs only)"}
                print("error: " + format_validation_errors(error, run.node_errors, graph), file=sys.stderr)
                return EXIT_REFUSED
        else:
            try:
                from .executor import run_graph
            except ImportError as exc:  # torch missing
                print(
                    f"error: running a workflow in-process needs torch ({exc}). "
                    "Install it with: pip install 'talkinghead[graph]', or pass --server to use a ComfyUI.",
                    file=sys.stderr,
                )
                return EXIT_REFUSED
            os.makedirs(out_dir, exist_ok=True)
            result = run_graph(graph, input_dir=input_dir, output_dir=out_dir, progress=progress)
            _summarise_outputs(result.outputs, _local_output_files(result.outputs, out_dir))
    except GraphValidationError as exc:
        print("error: " + format_validation_errors(exc.error, exc.node_errors, graph), file=sys.stderr)
        return EXIT_REFUSED
    except NodeExecutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NODE_FAILED
    return 0


def _cmd_run(args) -> int:
    graph = _parse_set(args.set or [], load_api_workflow(args.workflow))
    return run_workflow(graph, server=args.server, out_dir=os.path.abspath(args.out),
                        input_dir=os.path.abspath(args.input), progress=not args.quiet)


def _cmd_demo(args) -> int:
    graph = load_api_workflow(str(WORKFLOWS_DIR / DEMO_WORKFLOW))
    if args.text:
        speak_ids = [node_id for node_id, node in graph.items() if node["class_type"] == "TalkingHeadSpeak"]
        for node_id in speak_ids:
            graph[node_id]["inputs"]["text"] = args.text
    for node in graph.values():
        # The demo's portrait is the public-domain NASA photograph that scikit-image ships; the shipped
        # workflow leaves consent unset so that a user who swaps in a real person attests themselves.
        if node["class_type"] == "TalkingHeadReferenceEncoder":
            node["inputs"]["consent"] = True
    print(f"Talking Head demo: running {DEMO_WORKFLOW} (sample portrait + speech synthesised offline)")
    return run_workflow(graph, server=None, out_dir=os.path.abspath(args.out), input_dir=os.path.abspath(args.input),
                        progress=not args.quiet)


def _cmd_speak(args) -> int:
    from ...pipeline.core.errors import InputError
    from ...pipeline.speech.speak import SpeakConfig, speak_to_wav

    text = args.text
    if args.file:
        text = Path(args.file).read_text(encoding="utf-8")
    if text is None:
        raise UsageError("speak: give the script as TEXT or with --file")
    try:
        config = SpeakConfig(voice=args.voice, rate_wpm=args.rate_wpm, pitch=args.pitch)
        timings, notes = speak_to_wav(text, args.output, config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    for note in notes:
        print(f"note: {note}")
    if args.timings:
        Path(args.timings).write_text(timings.to_json(), encoding="utf-8")
        print(f"Wrote {args.timings}")
    print(f"Wrote {args.output} ({timings.duration_s:.2f} s, {len(timings.words)} words, {len(timings.phonemes)} phonemes)")
    return 0


def _write_text_atomically(path: str, text: str) -> None:
    from ...pipeline.core.output_paths import atomic_write_path

    with atomic_write_path(os.path.abspath(path), "--output") as temp_path:
        Path(temp_path).write_text(text, encoding="utf-8")


def _write_png(path: str, image, flag: str) -> None:
    """Writes uint8 RGB [H, W, 3] to `path` as PNG, atomically, and says so on stderr."""
    from PIL import Image

    from ...pipeline.core.output_paths import atomic_write_path

    with atomic_write_path(os.path.abspath(path), flag) as temp_path:
        Image.fromarray(image).save(temp_path, format="PNG")
    print(f"Wrote {path}", file=sys.stderr)


def _cmd_visemes(args) -> int:
    from ...pipeline.core.audio_io import load_audio
    from ...pipeline.core.errors import InputError
    from ...pipeline.lipsync import rhubarb, aligner as viseme_aligner

    try:
        clip = load_audio(args.audio, "AUDIO")
        text = Path(args.text_file).read_text(encoding="utf-8") if args.text_file else args.text
        track = viseme_aligner.align_speech(clip, fps=args.fps, transcript=text, language=args.language,
                                            recogniser=args.recogniser, asr_model=args.whisper_model)
        for warning in track.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not text and track.transcript:
            print(f"heard ({track.method}): {track.transcript}", file=sys.stderr)
        if track.audio_quality:
            from ...pipeline.lipsync.audio_quality import report_from_dict

            print(report_from_dict(track.audio_quality).to_text(), file=sys.stderr)
        if args.format == "rhubarb":
            payload = rhubarb.track_to_rhubarb(track, sound_file=os.path.abspath(args.audio))
        else:
            payload = track.to_dict()
        text_out = json.dumps(payload, indent=2 if args.format == "rhubarb" else None)
        if args.output:
            _write_text_atomically(args.output, text_out)
            print(f"Wrote {args.output} ({track.method}, {len(track.words)} words, {track.num_frames} frames)",
                  file=sys.stderr)
        else:
            print(text_out)
        if args.preview:
            from ...pipeline.core.audio_dsp import to_mono
            from ...pipeline.lipsync.preview import render_timeline

            _write_png(args.preview, render_timeline(track, to_mono(clip), clip.sample_rate), "--preview")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _cmd_reference(args) -> int:
    from ...pipeline.core.errors import InputError
    from ...pipeline.face.encoder import EncoderConfig, reference_from_image_path

    try:
        if not os.path.isfile(args.image):
            raise InputError("IMAGE", f"{args.image!r} is not a file", "Give the path of a portrait image.")
        encoded = reference_from_image_path(args.image, consent=args.consent, face_index=args.face_index,
                                            backend=args.backend, vae=args.vae,
                                            config=EncoderConfig(crop_size=args.crop_size))
        print(encoded.report_text)
        if args.output:
            json_path, tensors_path = encoded.reference.save(os.path.abspath(args.output))
            print(f"Wrote {json_path}" + (f" and {tensors_path}" if tensors_path else ""), file=sys.stderr)
        if args.preview:
            _write_png(args.preview, encoded.preview, "--preview")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _cmd_verify(args) -> int:
    """Content credentials and watermark of a file; exit 0 when generated content was recognised."""
    from ...pipeline.core.errors import InputError
    from ...pipeline.publish.provenance import read_manifest
    from ...pipeline.publish.watermark import detect_file, parse_payload

    try:
        if not os.path.isfile(args.file):
            raise InputError("FILE", f"{args.file!r} is not a file", "Give the path of a video or image.")
        anchor = None
        if args.trust_anchor:
            if not os.path.isfile(args.trust_anchor):
                raise InputError("--trust-anchor", f"{args.trust_anchor!r} is not a file",
                                 "Give the PEM file of the CA you trust.")
            anchor = Path(args.trust_anchor).read_bytes()
        manifest = None
        if args.file.lower().endswith((".mp4", ".m4v", ".mov")):
            manifest = read_manifest(args.file, anchor, input_name="FILE")
        mark = detect_file(args.file)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    lines = manifest.describe() if manifest is not None else ["Content credentials: not read (not an MP4)"]
    if mark.found:
        fields = parse_payload(mark.payload)
        lines.append(f"Watermark: found (confidence z = {mark.confidence:.1f}, in {mark.frames_marked_share:.0%} of "
                     f"{mark.frames_seen} frames): payload {mark.payload.hex()} (generator {fields['generator_id']:#06x}, "
                     f"clip {fields['clip_id']}, made {fields['unix_time_s']} s after 1970)")
    else:
        lines.append(f"Watermark: not found (confidence z = {mark.confidence:.1f}, {mark.frames_seen} frames read)")
    state = manifest.state if manifest is not None else "None"
    if state == "None" and mark.found:
        lines.append("This copy lost its content credentials (re-encoded or edited) but keeps the watermark: "
                     "it was generated.")
    if state == "Invalid":
        lines.append("The credentials do not match the media: the file was changed after it was signed.")
    if manifest is not None and mark.found and manifest.summary.get("watermark_payload_hex") not in (None, mark.payload.hex()):
        lines.append("The watermark payload differs from the one in the credentials.")
    print("\n".join(lines))
    return 0 if (mark.found or state in ("Valid", "Trusted")) else 1


def _cmd_prompt(args) -> int:
    """Refines a prompt with the PromptRefiner's rules; prints the prompts and the report (or JSON)."""
    from ...pipeline.core.errors import InputError
    from ...pipeline.prompt.refiner import refine_prompt

    try:
        try:
            text = Path(args.file).read_text(encoding="utf-8") if args.file else args.text
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError("--file", f"cannot read {args.file!r} ({exc})", "Give a UTF-8 text file.") from exc
        if text is None:
            raise UsageError("prompt: give the prompt as TEXT or with --file (\"\" for none)")
        rewriter = None
        if args.llm:
            from ...pipeline.prompt.rewriter import load_rewriter

            rewriter = load_rewriter(args.llm, "--llm")
        refined = refine_prompt(text, args.negative, preset=args.preset, token_budget=args.budget,
                                infer_detail=not args.no_infer, rules=args.rules or None, rewriter=rewriter)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(refined.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(f"positive: {refined.positive}")
        print(f"negative: {refined.negative}")
        print(refined.report_text(), file=sys.stderr)
    return 0


def _cmd_voices(_args) -> int:
    from ...pipeline.speech.speak import list_voices

    voices = sorted(list_voices(), key=lambda voice: voice.languages[0] if voice.languages else voice.identifier)
    for voice in voices:
        code = voice.languages[0] if voice.languages else voice.identifier
        print(f"{code:<14} {voice.name}")
    print(f"{len(voices)} voices; pass the code (first column) as --voice or the Speak node's voice.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkinghead", description="Talking Head: portrait + speech -> talking-head MP4.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add_io(sub):
        sub.add_argument("--out", default="output", help="folder for output files (default: ./output)")
        sub.add_argument("--input", default="input", help="folder loader nodes read from (default: ./input)")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")

    run = commands.add_parser("run", help="run an API-format workflow, in-process or on a ComfyUI server")
    run.add_argument("workflow", help="API-format workflow JSON (workflows/api/*.api.json, or ComfyUI's Export (API))")
    run.add_argument("--set", action="append", metavar="NODE_ID.input=value",
                     help="override a node input; value is JSON when it parses, else text (repeatable)")
    run.add_argument("--server", help="ComfyUI server URL, e.g. http://127.0.0.1:8188 (default: run in-process)")
    add_io(run)
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser("demo", help="make a talking-head MP4 from a sample portrait and synthesised speech")
    demo.add_argument("--text", help="what the head says")
    add_io(demo)
    demo.set_defaults(handler=_cmd_demo)

    speak = commands.add_parser("speak", help="synthesise speech to a WAV file with phoneme timings")
    speak.add_argument("text", nargs="?", help="the script (or use --file)")
    speak.add_argument("--file", help="read the script from this text file")
    speak.add_argument("-o", "--output", default="speech.wav", help="WAV file to write (default: speech.wav)")
    speak.add_argument("--voice", default="en-us")
    speak.add_argument("--rate-wpm", type=int, default=175)
    speak.add_argument("--pitch", type=int, default=50)
    speak.add_argument("--timings", help="also write the phoneme/word timings as JSON here")
    speak.set_defaults(handler=_cmd_speak)

    visemes = commands.add_parser("visemes", help="align speech and write the viseme track (ours or Rhubarb JSON)")
    visemes.add_argument("audio", help="speech audio file (wav, flac, mp3, ogg, m4a, ...)")
    visemes.add_argument("--text", help="transcript of the speech (improves accuracy)")
    visemes.add_argument("--text-file", help="read the transcript from this file")
    visemes.add_argument("--fps", type=float, default=25.0, help="video frame rate of the track (default 25)")
    visemes.add_argument("--language", default="en-us", help="language code (default en-us)")
    visemes.add_argument("--format", choices=("json", "rhubarb"), default="json",
                         help="json: our VisemeTrack; rhubarb: Rhubarb Lip Sync JSON (mouthCues A-H, X)")
    visemes.add_argument("-o", "--output", help="write here instead of standard output")
    visemes.add_argument("--preview", help="also draw the timeline to this PNG")
    visemes.add_argument("--recogniser", default="auto",
                         help="without a transcript: auto (Whisper where the asr extra is installed, else "
                         "pocketsphinx), whisper or pocketsphinx")
    visemes.add_argument("--whisper-model", metavar="DIR",
                         help="a faster-whisper (CTranslate2) model folder instead of the asr extra's tiny.en")
    visemes.set_defaults(handler=_cmd_visemes)

    reference = commands.add_parser("reference", help="find the face in a portrait: landmarks, pose, quality report")
    reference.add_argument("image", help="portrait image file (png, jpg, tiff; 16-bit and greyscale are fine)")
    reference.add_argument("--consent", action="store_true",
                           help="attest that you have the consent of the person shown (required)")
    reference.add_argument("--face-index", type=int, default=0, help="0 = the largest face (default)")
    reference.add_argument("--backend", choices=("auto", "mediapipe", "dlib"), default="auto")
    reference.add_argument("--crop-size", type=int, default=512, help="side of the aligned face crop in px")
    reference.add_argument("--vae", help="local AutoencoderKL folder or .safetensors file: also encode latents")
    reference.add_argument("-o", "--output", help="save the reference here (NAME.json + NAME.safetensors)")
    reference.add_argument("--preview", help="draw box, landmarks and pose to this PNG")
    reference.set_defaults(handler=_cmd_reference)

    verify = commands.add_parser("verify", help="read a file's content credentials (C2PA) and invisible watermark")
    verify.add_argument("file", help="video (MP4, WebM, ...) or image")
    verify.add_argument("--trust-anchor", help="PEM file of a CA you trust (then a matching signer reads Trusted)")
    verify.set_defaults(handler=_cmd_verify)

    from .cli_artifacts import add_parser as add_artifacts_parser

    add_artifacts_parser(commands)

    from .batch.command import add_parser as add_batch_parser

    add_batch_parser(commands)

    prompt = commands.add_parser("prompt", help="refine a prompt: normalise, resolve conflicts, infer detail, "
                                 "negatives, fit CLIP's token budget")
    prompt.add_argument("text", nargs="?", help="the prompt (or use --file)")
    prompt.add_argument("--file", help="read the prompt from this text file")
    prompt.add_argument("--negative", default="", help="your negative prompt (kept first)")
    prompt.add_argument("--preset", default="none", help="studio, office, outdoor, cinematic, ... (default: none)")
    prompt.add_argument("--budget", type=int, default=77,
                        help="CLIP tokens per prompt, start and end tokens included (default 77)")
    prompt.add_argument("--no-infer", action="store_true", help="do not add unsaid detail (framing, lighting, ...)")
    prompt.add_argument("--rules", action="append", metavar="FILE",
                        help="extra TOML rules merged over the shipped and your config folder's (repeatable)")
    prompt.add_argument("--llm", metavar="FOLDER", help="local transformers language model that rewrites first")
    prompt.add_argument("--json", action="store_true", help="print the RefinedPrompt as JSON")
    prompt.set_defaults(handler=_cmd_prompt)

    voices = commands.add_parser("voices", help="list the espeak-ng voices")
    voices.set_defaults(handler=_cmd_voices)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
