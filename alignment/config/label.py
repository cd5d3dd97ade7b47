"""The config sections of the labeling app (``label``: ``align-label`` and the app the labels stage
serves) and of the labels stage (``labels``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from alignment.config.base import Section, check
from alignment.config.choices import Annotators, LabelCommand, ReportsFor, Synchronous
from alignment.errors import UserError


@dataclass
class LabelExportConfig(Section):
    """``align-label export``: labels -> a TRL preferences dataset (``save_to_disk``) + summary.json."""

    dir: str = "${run.dir}/labels/preferences"
    keep_ties: bool = False
    keep_both_bad: bool = False
    #: Items with fewer labels are left out; ``None``: the project's overlap (complete items only).
    min_labels: int | None = None
    include_gold: bool = False
    #: Margin per strength 1..4 (Llama 2's "margin small").
    margins: list[float] = field(default_factory=lambda: [0.0, 1 / 3, 2 / 3, 1.0])


@dataclass
class LabelBotsConfig(Section):
    """``align-label bots``: simulated annotators labeling through the app's HTTP API."""

    n: int = 3
    url: str = "http://${label.host}:${label.port}/"
    noise: float = 0.1
    position_bias: float = 0.05
    #: Labels per bot (``None``: until the queue is empty).
    max_labels: int | None = None
    name_prefix: str = "bot"


@dataclass
class LabelConfig(Section):
    """The labeling app (``align-label``): database, queue rules, server, import/export."""

    KEY: ClassVar[str] = "label"

    #: The sub-command when none is given on the command line.
    command: LabelCommand = LabelCommand.serve
    #: A SQLite file (a path or sqlite:///PATH) or a PostgreSQL database (postgresql://USER@HOST/DB).
    db: str = "${run.dir}/labels/labels.db"
    project: str = "default"
    host: str = "127.0.0.1"
    port: int = 7860
    #: Distinct annotators per item.
    overlap: int = 3
    #: Share of assignments that are gold items (when there are gold items).
    gold_rate: float = 0.1
    #: An assignment not labeled within this time goes back to the pool.
    lease_seconds: float = 600.0
    #: SQLite ``synchronous`` in WAL mode: NORMAL survives a killed server process, FULL also power loss
    #: (ignored on PostgreSQL, whose commits are durable once acknowledged).
    synchronous: Synchronous = Synchronous.NORMAL
    #: Gradio queue's default_concurrency_limit (browser events) and the worker threads of the server.
    concurrency_limit: int = 32
    max_threads: int = 40
    #: Annotation guidelines (Markdown) shown one click away: one text for every UI language, or a map
    #: from language (``en``, ``zh-CN``) to its text. ``guidelines_file`` overrides it; a ``{lang}`` in
    #: its name reads one file per language (``guidelines.{lang}.md``).
    guidelines: Any = ""
    guidelines_file: str | None = None
    #: The Reports tab lists the pipeline runs in this folder (and one level below: sweeps).
    runs_dir: str = "runs"
    #: Who may read those reports: ``admins`` (default) or ``everyone`` logged in.
    reports_for: ReportsFor = ReportsFor.admins
    #: ``import``: the JSONL file, whether its pairs are gold items, whether bad lines are skipped.
    input: str | None = None
    import_as_gold: bool = False
    skip_invalid: bool = False
    #: ``import``: the longest prompt or response accepted, in characters (a longer one is an error naming
    #: its file and line: a pasted log or a runaway generation, not something to label).
    max_text_chars: int = 20_000
    export: LabelExportConfig = field(default_factory=LabelExportConfig)
    bots: LabelBotsConfig = field(default_factory=LabelBotsConfig)

    def check(self) -> None:
        if not isinstance(self.guidelines, str) and not (
                isinstance(self.guidelines, dict) and all(isinstance(v, str) for v in self.guidelines.values())):
            raise UserError("label.guidelines: expected Markdown text, or a map from language (en, zh-CN) to "
                            f"Markdown text; got {self.guidelines!r}")
        check(self.max_text_chars >= 1, "label.max_text_chars", self.max_text_chars, ">= 1")
        check(self.overlap >= 1, "label.overlap", self.overlap, ">= 1")
        check(0 <= self.gold_rate <= 1, "label.gold_rate", self.gold_rate, "within [0, 1]")
        check(self.lease_seconds > 0, "label.lease_seconds", self.lease_seconds, "> 0")


@dataclass
class LabelsGateConfig(Section):
    #: Fail the stage when, in more than this share of exported pairs, the filter flags the chosen
    #: response but not the rejected one (labels that would teach the reward model to prefer harm).
    max_chosen_unsafe_rate: float | None = 0.25


@dataclass
class LabelsStageConfig(Section):
    """The labels stage: the queued pairs get labeled in the app, then exported for the reward stage."""

    KEY: ClassVar[str] = "labels"

    #: ``simulated``: bots label through the app's HTTP API (from the demo world's gold preference, with
    #: ``label.bots.noise`` and ``position_bias``); ``human``: the app is served on ``label.host:port`` and
    #: the stage waits until every item has ``label.overlap`` labels.
    annotators: Annotators = Annotators.simulated
    #: ``human``: give up waiting after this many seconds (the stage then exits 4; rerun with
    #: ``resume=true`` once the labels are in); ``None`` waits for ever.
    wait_seconds: float | None = None
    poll_seconds: float = 10.0
    #: With ``candidates.acquisition=uncertainty``: every this many new labels, retrain the ensemble and
    #: replace the untouched uncertainty-chosen items of the queue by the pool's most uncertain pairs
    #: (leased or labelled items never move); 0: never.
    rerank_every: int = 0
    #: Measure the ensemble's accuracy against the number of labels (the report's learning curve).
    learning_curve: bool = True
    gate: LabelsGateConfig = field(default_factory=LabelsGateConfig)

    def check(self) -> None:
        check(self.poll_seconds > 0, "labels.poll_seconds", self.poll_seconds, "> 0")
        check(self.rerank_every >= 0, "labels.rerank_every", self.rerank_every, ">= 0 (0: never)")
