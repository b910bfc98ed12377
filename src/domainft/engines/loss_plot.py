"""The training curve: train and eval loss against steps, from the trainer_state.json both engines leave behind
(they train through the Hugging Face Trainer, which logs every logging_steps and every eval)."""

from __future__ import annotations

import json
from pathlib import Path

LOSS_PNG = "loss.png"


def loss_history(trainer_state: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, eval loss) points from a trainer_state.json."""
    history = json.loads(Path(trainer_state).read_text(encoding="utf-8")).get("log_history", [])
    train = [(int(e["step"]), float(e["loss"])) for e in history if "loss" in e and "step" in e]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in history if "eval_loss" in e and "step" in e]
    return train, evals


def trainer_state(train_dir: Path) -> Path | None:
    """The run's trainer_state.json: LLaMA-Factory leaves one beside the adapter, Axolotl only in checkpoints
    (then the newest checkpoint's, which holds the whole history)."""
    train_dir = Path(train_dir)
    checkpoints = sorted((p for p in train_dir.glob("checkpoint-*/trainer_state.json")
                          if p.parent.name.split("-")[-1].isdigit()), key=lambda p: int(p.parent.name.split("-")[-1]))
    return next((p for p in [train_dir / "trainer_state.json", *checkpoints[::-1]] if p.is_file()), None)


def write_loss_plot(train_dir: Path, *, title: str) -> Path | None:
    """train_dir/loss.png from its trainer state; None when there is no history to draw."""
    train_dir = Path(train_dir)
    state = trainer_state(train_dir)
    if state is None:
        return None
    train, evals = loss_history(state)
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", color="#4C72B0")
    if evals:
        ax.plot(*zip(*evals), label="eval loss (validation split)", color="#DD8452", marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = train_dir / LOSS_PNG
    tmp = train_dir / f".{LOSS_PNG}.tmp"
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(out)  # whole or not at all
    return out
