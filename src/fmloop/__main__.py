"""`python -m fmloop ...` (what torchrun launches: torchrun --nproc_per_node=2 -m fmloop pretrain ...)."""

from fmloop.cli.main import run

if __name__ == "__main__":
    run()
