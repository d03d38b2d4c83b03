"""Talking Head pipeline: the standalone stages behind the ComfyUI nodes, one package per stage.

core (shared types and I/O) is at the bottom; prompt, speech, lipsync and face build on it; render builds
on face, lipsync and prompt; publish and report sit beside render. Never imports ComfyUI or nodes/.
"""
