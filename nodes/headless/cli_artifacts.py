"""`talkinghead artifacts VIDEO`: score a talking-head video file (ours or anyone's).

    talkinghead artifacts VIDEO [--reference REF.json] [--track TRACK.json] [-o report.json] [--plot plot.png]

Prints the summary to standard output (or the JSON, with -o -); writes the report JSON and the plot
atomically. Exit status: 0 success, 2 bad input (the error is printed to standard error).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _cmd_artifacts(args) -> int:
    from ...pipeline.core.errors import InputError
    from ...pipeline.core.output_paths import atomic_write_path
    from ...pipeline.report.artifact_report import score_file

    try:
        reference = None
        if args.reference:
            from ...pipeline.face.reference import Reference

            if not os.path.isfile(args.reference):
                raise InputError("--reference", f"no file at {args.reference!r}", "Give a reference .json saved by "
                                 "`talkinghead reference IMAGE --consent -o NAME`.")
            reference = Reference.load(os.path.abspath(args.reference), "--reference")
        intended = None
        if args.track:
            from ...pipeline.lipsync.track import VisemeTrack

            fix = "Give a viseme track JSON written by `talkinghead visemes`."
            try:
                raw = json.loads(Path(args.track).read_text(encoding="utf-8"))
                if not isinstance(raw, dict) or not str(raw.get("format", "")).startswith("talkinghead.viseme_track"):
                    raise InputError("--track", f"{args.track!r} is not a viseme track (no talkinghead.viseme_track "
                                     "format tag)", fix)
                track = VisemeTrack.from_dict(raw)
            except OSError as exc:
                raise InputError("--track", f"cannot read {args.track!r} ({exc.strerror})", fix) from exc
            except InputError:
                raise
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError("--track", f"{args.track!r} is not a viseme track ({exc})", fix) from exc
            if track.mouth.shape[0] == 0:
                raise InputError("--track", f"{args.track!r} holds no frames", fix)
            intended = track.lip_gap()
        if not os.path.isfile(args.video):
            raise InputError("VIDEO", f"no video file at {args.video!r}", "Check the file name and folder.")
        report = score_file(args.video, reference=reference, intended_mouth=intended, input_name="VIDEO")
        if args.output == "-":
            print(report.to_json(indent=2))
        else:
            print(report.summary_text())
        if args.output and args.output != "-":
            with atomic_write_path(os.path.abspath(args.output), "--output") as temp_path:
                Path(temp_path).write_text(report.to_json(indent=1), encoding="utf-8")
            print(f"Wrote {args.output}", file=sys.stderr)
        if args.plot:
            from PIL import Image

            from ...pipeline.report.plot import render_artifact_plot

            with atomic_write_path(os.path.abspath(args.plot), "--plot") as temp_path:
                Image.fromarray(render_artifact_plot(report)).save(temp_path, format="PNG")
            print(f"Wrote {args.plot}", file=sys.stderr)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def add_parser(commands) -> None:
    """Adds the `artifacts` subcommand to the `talkinghead` subparsers (cli.build_parser)."""
    artifacts = commands.add_parser(
        "artifacts", help="score a talking-head video: lip-sync lag, identity drift, flicker, broken frames")
    artifacts.add_argument("video", metavar="VIDEO", help="video file with sound (mp4, mov, mkv, webm)")
    artifacts.add_argument("--reference", metavar="REF.json",
                           help="reference JSON (from `talkinghead reference`) to measure identity "
                           "against (default: the first frame with a face)")
    artifacts.add_argument("--track", metavar="TRACK.json",
                           help="viseme track JSON (from `talkinghead visemes`): correlate its jaw_open "
                           "with the measured mouth opening")
    artifacts.add_argument("-o", "--output", metavar="report.json",
                           help="write the report JSON here ('-' prints it instead of the summary)")
    artifacts.add_argument("--plot", metavar="plot.png", help="draw the measurements to this PNG")
    artifacts.set_defaults(handler=_cmd_artifacts)


def main(argv=None) -> int:
    """Runs the subcommand alone (for tests and before the main CLI registers it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="talkinghead")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
