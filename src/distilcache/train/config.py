"""What a training run is asked to do: plain settings, checked before any work, no torch."""

import math
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from distilcache.cache_format.errors import ConfigError

STUDENTS = ("bilstm", "transformer")
INITS = ("auto", "random", "token-vectors", "seed")
TOKEN_WEIGHTS = ("mean", "cache")  # uniform weights, or the cached per-token (IDF) weights
# the embedding table: the pieces the cache uses (and the special tokens), or the whole tokenizer; auto:
# the cache's pieces for a vocabulary over weighting.student_vocab.LARGE_VOCABULARY, else the whole
VOCABULARIES = ("auto", "cache", "tokenizer")
LOSSES = ("cosine", "mse", "mix")
SCHEDULES = ("linear", "cosine")
SELECTIONS = ("fidelity", "dev")  # what picks the saved epoch: held-out fidelity, or Spearman on the first --dev-sts set
PRECISIONS = ("auto", "fp32", "bf16")
# a seeded transformer starts close to the teacher and wants a smaller step (chosen on STS-B dev)
DEFAULT_LR = {"bilstm": 2e-3, "transformer": 5e-4, "seed": 4e-4}
# BiLSTM sizes a preset gives where no flag sets them, as fractions of the teacher dim: default, an LSTM of
# a third of it; fast, an embedding of a third (a PCA of the token vectors) and an LSTM of a sixth.
# benchmarks/ablation.py measures the candidates
PRESETS: dict[str, dict[str, Fraction]] = {
    "default": {"hidden": Fraction(1, 3)},
    "fast": {"embedding_dim": Fraction(1, 3), "hidden": Fraction(1, 6)},
}


@dataclass
class TrainConfig:
    cache: Path | str  # a directory or a URI (s3://...), pulled into its local mirror
    output: Path
    student: str = "bilstm"  # one of STUDENTS
    preset: str = "default"  # default | fast: the BiLSTM sizes of PRESETS, under any size given here
    layers: int | None = None  # default: 1 (bilstm), 2 (transformer)
    hidden: int | None = None  # default: the preset's (bilstm, per direction), 256 (transformer)
    # bilstm: default the teacher dim when starting from token vectors (smaller: their PCA), else 256
    embedding_dim: int | None = None
    concat_embeddings: bool = True  # bilstm: pool [embedding; LSTM states]
    heads: int = 4  # transformer
    dropout: float = 0.1
    # auto: a bilstm starts from the cache's token vectors, a transformer from its seed layers, when present;
    # random | token-vectors (bilstm) | seed (transformer)
    init: str = "auto"
    vocabulary: str = "auto"  # one of VOCABULARIES
    # what the student pools with: uniform weights (mean), or the cached per-token (IDF) weights. mean: as good on
    # STS-B dev in domain and out (benchmarks/ablation.py, variant R), and encode then runs no jieba
    token_weights: str = "mean"
    # learn per-token scores that reweight those weights; default: on for a bilstm (benchmarks/ablation.py
    # measures it), off for a transformer (not measured)
    attention_pooling: bool | None = None
    # read each row's pieces between the tokenizer's start and end tokens ([CLS] ... [SEP]), as the teacher read
    # them (they weigh 0 in pooling); default: on for a transformer, off for a bilstm (two more tokens a row for no
    # gain there; benchmarks/generalisation.py measures both)
    special_tokens: bool | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # default: DEFAULT_LR by student and start
    # bilstm: the token embedding learns at lr times this (0 freezes it); benchmarks/ablation.py measures it
    embedding_lr_scale: float = 3.0
    weight_decay: float = 0.01
    # bilstm: each step pulls the token embedding toward its starting vectors (the teacher's) by lr * this,
    # in place of weight decay, so tokens the cache rarely holds keep the teacher's meaning
    embedding_anchor: float = 0.0
    warmup: float = 0.05  # fraction of all steps
    schedule: str = "linear"  # one of SCHEDULES: the decay after warm-up
    grad_clip: float = 1.0  # the largest gradient norm; 0: no clipping
    loss: str = "cosine"  # one of LOSSES
    mse_weight: float = 0.5  # the MSE share of loss "mix"
    similarity_weight: float = 0.0  # weight of the in-batch similarity-matrix loss added to the loss above
    temperature: float = 0.05  # of that similarity-matrix loss
    # the teacher vectors of this many earlier training rows join each batch in that loss: more rows to compare with
    similarity_queue: int = 0
    # weight of the token-state loss: every token's output, in the cache's principal components, against the teacher's
    # state there (train/losses.py: token_state_loss); needs a cache made with precompute --token-states
    token_loss: float = 0.0
    # Matryoshka: vectors whose first k dimensions work on their own; for each k, the similarity-matrix loss of
    # the student's first k dimensions (re-normalised) against the teacher's full vectors, times matryoshka_weight
    matryoshka_dims: tuple[int, ...] = ()
    matryoshka_weight: float = 1.0
    # rows shuffled together: training reads the cache a buffer at a time (memory holds this many rows,
    # not the cache); a cache smaller than it is shuffled whole
    shuffle_buffer: int = 250_000
    val_fraction: float = 0.05
    # similarity sets (sentence1, sentence2, score TSV) scored after every epoch, Spearman x100 in the log;
    # under select "dev" the first picks the epoch saved
    dev_sts: tuple[Path, ...] = ()
    select: str = "fidelity"  # one of SELECTIONS
    patience: int = 3  # epochs without a better selection score before stopping
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # one of PRECISIONS; auto: bf16 autocast on CUDA where supported, else fp32
    resume: bool = False

    def validate(self) -> None:
        """Refuse, before any work, options that cannot give a student."""
        for name, low in (("epochs", 1), ("batch_size", 1), ("shuffle_buffer", 1), ("patience", 1), ("heads", 1), ("seed", 0),
                          ("similarity_queue", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        for name in ("layers", "hidden", "embedding_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        numbers = {"dropout": self.dropout, "lr": self.lr, "embedding_lr_scale": self.embedding_lr_scale,
                   "embedding_anchor": self.embedding_anchor, "weight_decay": self.weight_decay, "warmup": self.warmup,
                   "grad_clip": self.grad_clip, "mse_weight": self.mse_weight, "similarity_weight": self.similarity_weight,
                   "temperature": self.temperature, "val_fraction": self.val_fraction, "matryoshka_weight": self.matryoshka_weight,
                   "token_loss": self.token_loss}
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}")
        dims = list(self.matryoshka_dims)
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in dims) or dims != sorted(set(dims)):
            raise ConfigError(f"--matryoshka-dims must be increasing positive integers, got {','.join(map(str, dims))}")
        for name in ("embedding_lr_scale", "embedding_anchor", "weight_decay", "grad_clip", "similarity_weight", "matryoshka_weight",
                     "token_loss"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.warmup <= 1 or not 0 <= self.mse_weight <= 1:
            raise ConfigError(f"--warmup and --mse-weight must be in [0, 1], got {self.warmup} and {self.mse_weight}")
        if self.similarity_queue and not self.similarity_weight:
            raise ConfigError("--similarity-queue adds rows to the similarity-matrix loss: give it a --similarity-weight above 0")
        if self.select == "dev" and not self.dev_sts:
            raise ConfigError("--select dev needs a similarity set: --dev-sts FILE")
        choices = {"student": STUDENTS, "init": INITS, "vocabulary": VOCABULARIES, "token_weights": TOKEN_WEIGHTS, "loss": LOSSES,
                   "schedule": SCHEDULES, "precision": PRECISIONS, "preset": tuple(PRESETS), "select": SELECTIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.preset != "default" and self.student != "bilstm":
            raise ConfigError(f"--preset {self.preset} sizes a BiLSTM; it does not apply to --student {self.student}")
        if (self.init == "seed" and self.student != "transformer") or (self.init == "token-vectors" and self.student != "bilstm"):
            raise ConfigError("--init seed applies to --student transformer, --init token-vectors to --student bilstm")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("--val-fraction must be between 0 and 1")

    def with_defaults(self, teacher_dim: int) -> "TrainConfig":
        """The per-student defaults filled in where this config leaves them unset: the preset's BiLSTM
        sizes, attention pooling and special tokens."""
        bilstm = self.student == "bilstm"
        attention = bilstm if self.attention_pooling is None else self.attention_pooling
        specials = not bilstm if self.special_tokens is None else self.special_tokens
        sizes = {k: max(1, int(f * teacher_dim)) for k, f in PRESETS[self.preset].items() if getattr(self, k) is None} if bilstm else {}
        return replace(self, attention_pooling=attention, special_tokens=specials, **sizes)

    @staticmethod
    def upgrade_settings(settings: dict[str, Any]) -> dict[str, Any]:
        """Settings an older release recorded (in a checkpoint), in today's names."""
        renamed = {"pooling": "token_weights"}  # it named the student's token weights, not the teacher's pooling
        # what it did (it shuffled the whole cache: a resumed run goes on with today's shuffle buffer)
        before = {"vocabulary": "auto", "matryoshka_dims": (), "matryoshka_weight": 1.0,
                  "shuffle_buffer": TrainConfig.shuffle_buffer, "embedding_anchor": 0.0, "dev_sts": (), "select": "fidelity",
                  "special_tokens": False, "token_loss": 0.0, "similarity_queue": 0}
        return before | {renamed.get(k, k): v for k, v in settings.items()}

    @staticmethod
    def reporting_only(settings: dict[str, Any], recorded: dict[str, Any]) -> set[str]:
        """The settings that do not decide the weights between these two: the --dev-sts sets only report
        scores where held-out fidelity picks the epoch on both sides (--select fidelity)."""
        return {"dev_sts"} if settings["select"] == recorded.get("select") == "fidelity" else set()

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """The settings in which recorded (a checkpoint's, upgraded) differs from this config's, but those
        that only report (a resumed run may name its reporting --dev-sts sets otherwise)."""
        mine = self.settings()
        return differing_keys(mine, recorded, ignore=TrainConfig.reporting_only(mine, recorded))

    def settings(self) -> dict[str, Any]:
        """What decides the trained weights (device, precision and resume do not change the recipe)."""
        def plain(value: Any) -> Any:
            return str(value) if isinstance(value, Path) else tuple(map(plain, value)) if isinstance(value, (list, tuple)) else value

        return {k: plain(v) for k, v in asdict(self).items() if k not in ("cache", "output", "device", "precision", "resume")}


def differing_keys(a: dict[str, Any], b: dict[str, Any], ignore: AbstractSet[str] = frozenset()) -> list[str]:
    """The keys, sorted, whose values differ between a and b (a key missing on one side differs), but ignore."""
    return sorted(k for k in a.keys() | b.keys() if k not in ignore and a.get(k) != b.get(k))


FINETUNE_LOSSES = ("cosent", "cosine-mse")  # on the gold labels: the order of the pairs' scores, or the scores themselves
# a fine-tuning step is smaller than a distillation one (the student is already trained); both chosen on STS-B
# dev (benchmarks/finetune.py): a seeded transformer barely moved at 2e-5
FINETUNE_LR = {"bilstm": 1e-3, "transformer": 5e-5}


@dataclass
class FinetuneConfig:
    """Fine-tune a trained student on labelled pairs, the teacher as a soft label: the loss is
    alpha * (in-batch similarity-matrix loss against the teacher's vectors, at temperature)
    + (1 - alpha) * (loss on the gold scores)."""

    student: Path  # a trained student directory
    pairs: Path  # sentence1<TAB>sentence2<TAB>score (0-5 or 0/1)
    output: Path  # a new student directory
    cache: Path | str | None = None  # the teacher's vectors for the pair sentences it holds (else the student's own, before)
    dev: Path | None = None  # pairs that choose the best epoch by Spearman (else the last epoch)
    loss: str = "cosent"  # one of FINETUNE_LOSSES
    # chosen on STS-B and STS-B-zh dev (benchmarks/finetune.py): the gold side alone scored highest there
    alpha: float = 0.0
    temperature: float = 0.05
    epochs: int = 4
    batch_size: int = 32
    lr: float | None = None  # default: FINETUNE_LR by student
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 2), ("seed", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        for name in ("alpha", "temperature", "weight_decay", "lr"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0 or (self.lr is not None and self.lr <= 0) or self.weight_decay < 0:
            raise ConfigError(f"--temperature and --lr must be > 0 and --weight-decay >= 0, got {self.temperature}, {self.lr}, "
                              f"{self.weight_decay}")
        if self.loss not in FINETUNE_LOSSES:
            raise ConfigError(f"--loss must be one of {FINETUNE_LOSSES}, got {self.loss!r}")
