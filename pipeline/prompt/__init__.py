"""PromptRefiner: a loose prompt -> positive and negative prompts fitted to a CLIP token budget, with a
report of every change. Entry point: `refiner.refine_prompt`; rules in `data/prompt_rules.toml`."""
