"""`talkinghead batch`: many jobs from one workflow, resumable, on local worker processes, ComfyUI
servers or a Ray cluster. Entry point: `command.add_parser`; jobs and manifests in `jobs`."""
