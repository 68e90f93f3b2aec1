"""Train a fer-hf model with the Hugging Face Trainer: flags, or one YAML file plus overrides.

    python train.py configs/factorized_fer2013_cpu.yaml
    python train.py configs/factorized_fer2013_cpu.yaml --max_steps 200 --output_dir runs/try
    accelerate launch train.py configs/baseline_affectnet8_gpu.yaml          # GPU(s), bf16
    accelerate launch --multi_gpu --num_processes 2 train.py CONFIG --use_cpu true  # CPU DDP (gloo)

`python train.py --help` lists every argument; `fer-hf train ...` is the same command.
"""

import sys

from fer_hf.training.run import main

if __name__ == "__main__":
    try:
        sys.exit(main(prog="train.py"))
    except (ValueError, FileNotFoundError) as err:
        # Bad configs and data are reported in one line; a traceback would bury the message.
        print(f"train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
