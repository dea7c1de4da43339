"""The fine-tuning track: LoRA / full SFT of chat models with NeMo Automodel.

* :mod:`filmorph.finetune.data`: OpenAI-messages chat JSONL validation (errors name file:line),
  counts, clean copies, a synthetic chat set;
* :mod:`filmorph.finetune.config`: presets (``nemotron3_nano_lora``, ``llama3_8b_lora``,
  ``llama3_8b_sft``) and the pure translation into Automodel's fine-tuning recipe YAML;
* :mod:`filmorph.finetune.run`: the launcher (torchrun + recipe, resumable), export of the HF PEFT
  adapter / HF checkpoint, merging;
* :mod:`filmorph.finetune.loss`: held-out assistant-token loss with transformers (+ peft);
* :mod:`filmorph.finetune.kernels`: the offline wheelhouse of mamba-ssm and causal-conv1d.

Command line: ``python -m filmorph.finetune --help``. Nothing here imports torch, peft or
nemo_automodel at import time.
"""
