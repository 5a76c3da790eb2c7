"""`run_nightly`: run a study again, compare every configuration with a baseline, report, pass or fail.

A nightly is a normal study run (`run_study`) in a fresh folder ``<storage>/nightly/<UTC time>`` (so the
base models are retrained with today's code) that records into the study's usual MLflow experiment.
Its trials are matched with the baseline's by their search-axis values (a nightly study is grid-only),
and every metric under ``nightly.tolerances`` is checked::

    worse = baseline − current (a "drop" metric) or current − baseline (a "rise" metric)
    regression when worse > max(absolute tolerance, pct/100 · |baseline|)

The baseline is, in order: ``--baseline RUN_ID`` (any parent run of the study), ``--baseline FILE`` (a
JSON file this module writes), or by default the newest nightly of the study in MLflow tagged
``nightly=pass`` or ``nightly.baseline=true``. Without one, the run is recorded as the baseline and
passes. The parent run gets the report (``nightly/report.md``, ``.html``, ``.json``), the tag
``nightly=pass|fail|error`` and the metric ``nightly_regressions``.

Example:
    >>> report = run_nightly(load_study("studies/nightly.yaml"))   # doctest: +SKIP
    >>> report.passed, [c.metric for c in report.regressions]     # doctest: +SKIP
    (False, ['gflops_avg'])
"""
from __future__ import annotations

import html
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .schema import Study, Tolerance, Tracking

__all__ = ["Check", "NightlyReport", "compare", "config_key", "run_nightly"]

Results = dict[str, dict[str, float]]  # config key → metrics
Status = Literal["ok", "regressed", "missing", "new"]
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE_FORMAT = "vared-nightly-baseline/1"


def config_key(params: dict[str, Any]) -> str:
    """A configuration's identity: its search-axis values, sorted (``"dims=both, optim.lr=0.01"``)."""
    return ", ".join(f"{k}={params[k]}" for k in sorted(params)) or "(defaults)"


@dataclass(frozen=True)
class Check:
    """One configuration × metric: its baseline and current value, the allowance and the verdict.
    ``missing``: the baseline's configuration has no finished trial now (``error`` says why);
    ``new``: a configuration the baseline does not have (reported, never a failure)."""

    config: str
    metric: str
    status: Status
    baseline: float | None = None
    current: float | None = None
    worse_by: float | None = None
    allowed: float | None = None
    error: str | None = None


def compare(baseline: Results, current: Results, tolerances: dict[str, Tolerance],
            errors: dict[str, str] | None = None) -> list[Check]:  # fmt: skip
    """Check every configuration of ``baseline`` against ``current`` with ``tolerances``.

    Args:
        baseline / current: config key → metrics.
        tolerances: metric → `Tolerance`.
        errors: config key → error of a failed trial, quoted for configurations that are missing.
    """
    checks: list[Check] = []
    for config, base in baseline.items():
        now = current.get(config)
        for metric, tol in tolerances.items():
            if metric not in base:
                continue  # the baseline never measured it: nothing to compare
            if now is None or metric not in now:
                why = (errors or {}).get(config) or ("no finished trial" if now is None else f"{metric} not reported")
                checks.append(Check(config, metric, "missing", baseline=base[metric], error=why))
                continue
            b, c = base[metric], now[metric]
            status: Status = "regressed" if tol.regressed(b, c) else "ok"
            checks.append(Check(config, metric, status, b, c, tol.worsening(b, c), tol.allowance(b)))
    for config in current.keys() - baseline.keys():
        checks += [Check(config, m, "new", current=current[config][m]) for m in tolerances if m in current[config]]
    return checks


@dataclass
class NightlyReport:
    """What a nightly found. ``passed``: no regressed or missing check and the study ran."""

    study: str
    run_id: str | None
    baseline: str  # where the baseline came from, in words
    checks: list[Check] = field(default_factory=list)
    message: str = ""
    error: str | None = None  # the study could not run
    results: Results = field(default_factory=dict)
    folder: str = ""  # the nightly's study folder; the report is written to <folder>/report/
    accepted: bool = False  # --update-baseline: this run is the new baseline whatever it found

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("regressed", "missing")]

    @property
    def passed(self) -> bool:
        return self.error is None and not self.regressions

    @property
    def verdict(self) -> str:
        return "error" if self.error else ("pass" if self.passed else "fail")

    def summary(self) -> str:
        if self.error:
            return f"nightly {self.study}: ERROR, the study could not run: {self.error}"
        bad = sorted({f"{c.metric} ({c.config})" for c in self.regressions})
        head = f"nightly {self.study}: {self.verdict.upper()}"
        if bad:
            head += f", {len(self.regressions)} regression(s): " + "; ".join(bad)
        return "\n".join(x for x in (head, f"baseline: {self.baseline}", self.message) if x)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict, "regressions": len(self.regressions)}

    def to_markdown(self) -> str:
        lines = [f"# Nightly `{self.study}`: **{self.verdict.upper()}**", "", f"- MLflow run: `{self.run_id}`",
                 f"- Baseline: {self.baseline}"]  # fmt: skip
        lines += [f"- {self.message}"] if self.message else []
        lines += [f"- **Error**: {self.error}"] if self.error else []
        if self.checks:
            lines += ["", "| configuration | metric | baseline | current | worse by | allowed | status |",
                      "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
            for c in self.checks:
                status = c.status.upper() if c.status in ("regressed", "missing") else c.status
                note = f" ({c.error})" if c.error else ""
                lines.append(f"| {c.config} | {c.metric} | {_num(c.baseline)} | {_num(c.current)} | "
                             f"{_num(c.worse_by)} | {_num(c.allowed)} | {status}{note} |")  # fmt: skip
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        colour = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#9a6700"}[self.verdict]
        rows = "".join(
            f"<tr class='{c.status}'><td>{html.escape(c.config)}</td><td>{c.metric}</td><td>{_num(c.baseline)}</td>"
            f"<td>{_num(c.current)}</td><td>{_num(c.worse_by)}</td><td>{_num(c.allowed)}</td>"
            f"<td>{c.status}{html.escape(f' ({c.error})' if c.error else '')}</td></tr>"
            for c in self.checks
        )
        info = "".join(f"<p>{html.escape(x)}</p>" for x in (f"Baseline: {self.baseline}", self.message,
                                                              self.error and f"Error: {self.error}") if x)  # fmt: skip
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>nightly "
            f"{html.escape(self.study)}</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 8px}}"
            "tr.regressed,tr.missing{background:#ffebe9}tr.new{color:#57606a}</style></head><body>"
            f"<h1>Nightly {html.escape(self.study)}: <span style='color:{colour}'>{self.verdict.upper()}</span></h1>"
            f"{info}<table><tr><th>configuration</th><th>metric</th><th>baseline</th><th>current</th>"
            f"<th>worse by</th><th>allowed</th><th>status</th></tr>{rows}</table></body></html>\n"
        )


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


# ---------------------------------------------------------------------------------------- baselines
def _results(trials: list[dict[str, Any]]) -> Results:
    return {config_key(t["params"]): dict(t["metrics"]) for t in trials}


def _errors(failed: list[dict[str, Any]]) -> dict[str, str]:
    return {config_key(t["params"]): t["error"] or t["status"] for t in failed}


def _run_results(uri: str, run_id: str) -> Results:
    from .tracking import StudyTracker, study_trials

    return _results(study_trials(StudyTracker.of_run(uri, run_id)).done)


def read_baseline_file(path: Path) -> Results:
    """The results of a baseline file written by `write_baseline_file`.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable nightly baseline ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FILE_FORMAT or not isinstance(doc.get("configs"), list):
        raise ValueError(f"{path}: format: not a nightly baseline file (expected format {_FILE_FORMAT!r} and a "
                         "'configs' list)")  # fmt: skip
    out: Results = {}
    for i, row in enumerate(doc["configs"]):
        if not (isinstance(row, dict) and isinstance(row.get("params"), dict) and isinstance(row.get("metrics"), dict)):
            raise ValueError(f"{path}: configs[{i}]: needs 'params' and 'metrics' mappings")
        bad = [k for k, v in row["metrics"].items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise ValueError(f"{path}: configs[{i}].metrics.{bad[0]}: must be a number")
        out[config_key(row["params"])] = {k: float(v) for k, v in row["metrics"].items()}
    return out


def write_baseline_file(path: Path, study: str, run_id: str | None, trials: list[dict[str, Any]]) -> None:
    doc = {"format": _FILE_FORMAT, "study": study, "run_id": run_id, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "configs": [{"params": t["params"], "metrics": t["metrics"]} for t in trials]}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def is_run_id(baseline: str) -> bool:
    """``--baseline`` names an MLflow run (32 hex digits, not an existing file) rather than a file."""
    return bool(_RUN_ID.match(baseline)) and not Path(baseline).exists()


# ---------------------------------------------------------------------------------------- the nightly
def run_nightly(study: Study, *, baseline: str | None = None, update_baseline: bool = False,
                address: str | None = None, verbose: int = 1) -> NightlyReport:  # fmt: skip
    """Run ``study`` in a fresh folder, compare it with its baseline and record the report (module doc).

    Args:
        study: a loaded study with a ``nightly`` section.
        baseline: an MLflow parent run id or a baseline JSON file; ``None``: the last passing nightly.
        update_baseline: make this run the baseline whatever it finds (tag ``nightly.baseline=true``, or
            rewrite the baseline file).
        address: Ray cluster address (else ``RAY_ADDRESS``, the study's ``ray.address``, local Ray).

    Raises:
        ValueError: when the study has no ``nightly`` section, or a given baseline cannot be read.
    """
    from .run import run_study
    from .tracking import latest_baseline_run, load_study_state

    if study.nightly is None:
        raise ValueError(f"{study.source}: nightly: the study has no 'nightly' section (metric tolerances)")
    uri, experiment = study.tracking_uri(), study.experiment_name()
    base_file = Path(baseline) if baseline is not None and not is_run_id(baseline) else None
    reference: Results | None = None
    where = ""
    if baseline is not None and base_file is None:
        try:
            reference, where = _run_results(uri, baseline), f"MLflow run {baseline}"
        except Exception as e:  # mlflow raises its own exception types for unknown ids
            raise ValueError(f"--baseline {baseline}: no such MLflow run in {uri} ({e})") from None
    elif base_file is not None and base_file.exists():
        reference, where = read_baseline_file(base_file), f"file {base_file}"

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    night = study.model_copy(update={"storage": Path(study.storage) / "nightly" / stamp,
                                     "tracking": Tracking(uri=uri, experiment=experiment)})  # fmt: skip
    report = NightlyReport(study.name, None, where, folder=str(night.storage))
    try:
        result = run_study(night, address=address, verbose=verbose)
    except Exception as e:  # the study could not run: report it next to what it recorded
        report.error = f"{type(e).__name__}: {e}"
        report.run_id = load_study_state(Path(night.storage)).get("parent_run_id")
        try:
            _record(uri, report, tag_baseline=False)
        except Exception as e2:  # MLflow may be what failed; the local report is written first
            report.message = f"the report could not be logged to MLflow ({type(e2).__name__}: {e2})"
        return report
    run_id = report.run_id = result.tracker.parent_run_id
    report.results = _results(result.trials)
    if baseline is None:
        found = latest_baseline_run(uri, experiment, study.name, exclude=run_id)
        if found is not None:
            reference, report.baseline = _run_results(uri, found), f"MLflow run {found} (last passing nightly)"
    if reference is None:
        report.baseline = "none found"
        report.message = ("no baseline yet: this run is recorded as the baseline"
                          + (f" in {base_file}" if base_file else "") + " and passes")  # fmt: skip
        reference = report.results
        update_baseline = True
    report.checks = compare(reference, report.results, dict(study.nightly.tolerances), _errors(result.failed))
    if update_baseline:
        report.accepted = True
        if base_file is not None:
            write_baseline_file(base_file, study.name, run_id, result.trials)
        if report.regressions and not report.message:
            report.message = "--update-baseline: accepted as the new baseline despite the regressions below"
    _record(uri, report, tag_baseline=base_file is None and update_baseline)
    return report


def _record(uri: str, report: NightlyReport, *, tag_baseline: bool) -> None:
    """Write the report into the nightly's folder, and onto its parent run when there is one."""
    from .tracking import record_nightly

    folder = Path(report.folder) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(report.to_markdown(), encoding="utf-8")
    (folder / "report.html").write_text(report.to_html(), encoding="utf-8")
    (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    if report.run_id is None:
        return
    record_nightly(uri, report.run_id, verdict=report.verdict, baseline_source=report.baseline,
                   regressions=len(report.regressions), is_baseline=tag_baseline, report_folder=folder)
