"""The default training path: sentence-transformers' ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss`` and the ``NO_DUPLICATES`` batch sampler (no query or document twice in a batch).

Chosen over the project's own loop after measuring both (docs/foundation.md, "Fine-tuning comparison"). Everything
that could reach the network or write outside a temporary folder is switched off: no hub push, ``report_to`` none,
no checkpoints, no evaluation, CPU unless told otherwise. Needs ``datasets`` and ``accelerate``.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

from abharness.errors import ConfigError

if TYPE_CHECKING:
    from abharness.data.types import RetrievalDataset
    from abharness.finetune.pairs import Example
    from abharness.finetune.train import FinetuneParams

__all__ = ["train_with_trainer"]


def _columns(ds: RetrievalDataset, examples: list[Example], hard_negatives: int) -> dict[str, list[str]]:
    columns = {
        "anchor": [ds.queries[e.query_id] for e in examples],
        "positive": [ds.corpus[e.doc_id].full_text for e in examples],
    }
    for j in range(hard_negatives):
        columns[f"negative_{j + 1}"] = [ds.corpus[e.negative_ids[j]].full_text for e in examples]
    return columns


def _progress_callback(progress: bool) -> Any:
    """A TrainerCallback drawing the project's rich progress bar with the running loss."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    class _RichProgress(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.bar = Progress(
                TextColumn("fine-tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress,
            )
            self.task: Any = None
            self.losses: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.start()
            self.task = self.bar.add_task("train", total=state.max_steps, loss=float("nan"))

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                self.bar.update(self.task, loss=self.losses[-1])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(self.task, completed=state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.stop()

    return _RichProgress()


def _quiet(trainer_class: Any) -> Any:
    """The trainer without its model-card callback: we save with ``create_model_card=False``, and the callback
    samples widget examples with the global ``random`` at start-up and draws a tqdm bar."""

    class _Trainer(trainer_class):  # type: ignore[misc, valid-type]
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            return None

    return _Trainer


def train_with_trainer(
    model: Any, ds: RetrievalDataset, examples: list[Example], params: FinetuneParams, seed: int, progress: bool,
    device: str = "cpu",
) -> list[float]:
    """Train ``model`` in place for ``params.epochs`` epochs; return the mean training loss of each epoch."""
    try:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        try:
            from sentence_transformers.base.sampler import BatchSamplers
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.training_args import BatchSamplers
    except ImportError as exc:  # pragma: no cover - both are dependencies of the package
        raise ConfigError(
            f"the sentence-transformers trainer needs 'datasets' and 'accelerate' ({exc}); install them with "
            "`pip install datasets accelerate`, or pass --trainer loop"
        ) from exc
    from abharness.finetune.train import _loss_class

    if len(examples) < 2:
        raise ConfigError(f"{len(examples)} pairs make no batch of >= 2 distinct queries/documents; use more pairs")
    train = Dataset.from_dict(_columns(ds, examples, params.hard_negatives))
    callback = _progress_callback(progress)
    import dataclasses

    fields = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    # transformers 5 folds warmup_ratio into warmup_steps (a float below 1 is a ratio of the total steps)
    warmup = {"warmup_ratio": params.warmup_ratio} if "warmup_ratio" in fields else {"warmup_steps": params.warmup_ratio}
    with tempfile.TemporaryDirectory(prefix="abharness-trainer-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            **warmup,
            num_train_epochs=params.epochs,
            per_device_train_batch_size=params.batch_size,
            learning_rate=params.lr,
            weight_decay=params.weight_decay,
            max_grad_norm=params.max_grad_norm,
            lr_scheduler_type="linear",
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=seed,
            data_seed=seed,
            save_strategy="no",
            eval_strategy="no",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            push_to_hub=False,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
        )
        trainer = _quiet(SentenceTransformerTrainer)(
            model=model, args=args, train_dataset=train, loss=_loss_class()(model, scale=params.scale),
            callbacks=[callback],
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # our rich bar shows the loss; no dict printed per step
        trainer.train()
    model.eval()
    per_epoch: dict[int, list[float]] = {}
    for entry in trainer.state.log_history:
        if "loss" in entry and "epoch" in entry:
            per_epoch.setdefault(max(0, int(-(-entry["epoch"] // 1)) - 1), []).append(float(entry["loss"]))
    return [round(sum(v) / len(v), 6) for _, v in sorted(per_epoch.items())] or [float("nan")]
