"""The user's Talking Head config folder: signing identity, prompt rules, user settings."""

from __future__ import annotations

import os

#: Environment variable naming the config folder (takes precedence over XDG / ~/.config).
CONFIG_DIR_ENV_VAR = "TALKINGHEAD_CONFIG_DIR"


def default_config_dir() -> str:
    """The user's Talking Head config folder (not created here).

    `$TALKINGHEAD_CONFIG_DIR` if set, else `$XDG_CONFIG_HOME/talkinghead`, else
    `~/.config/talkinghead`.
    """
    env = os.environ.get(CONFIG_DIR_ENV_VAR, "").strip()
    if env:
        return os.path.abspath(os.path.expanduser(env))
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".config")
    return os.path.abspath(os.path.join(base, "talkinghead"))
