"""Shared types and I/O for every stage; imports no other stage. Entry points: `audio.AudioClip`,
`errors.InputError`, `audio_io.load_audio`, `image_input.load_image_input`, `ffmpeg`, `output_paths`
(atomic writes), `content_hash`, `config_dir`, `plot_style` and the sample `portraits`."""
