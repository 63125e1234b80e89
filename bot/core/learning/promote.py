"""`/cxr promote VERSION`, blue/green: compare, confirm, start the candidate if needed, switch
serving only once it is RUNNING, then offer to stop the old version.

The comparison is `bot.core.review.promotion`'s: agreement on reviewed cases (both versions
answer the same images, fetched again from Slack; none exported for training) when the
candidate runs and enough cases are at hand, else Rekognition's F1, labelled in-distribution.
A promotion in flight is stored, so a restart picks it up (`resume`) and still switches.
While both versions run, both bill: the cost guard meters every running version it sees, and
the candidate's run is opened here the moment it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.core.clock import Clock
from bot.core.errors import AwsFailure
from bot.core.fleet.state import Audit, Runs
from bot.core.imaging import decode
from bot.core.labels import Label
from bot.core.learning.ports import Leases, Promotion, ReviewLog, ServedVersions
from bot.core.leases import new_owner
from bot.core.model_answer import DEFAULT_TOLERANCE, read_answer
from bot.core.model_versions import (
    FAILED,
    RUNNING,
    STARTING,
    ModelCatalog,
    ModelVersion,
    find_version,
)
from bot.core.ports import Classifier, FileFetcher, Notice, Outbox
from bot.core.review.figures import Proportion
from bot.core.review.promotion import (
    Comparison,
    Measure,
    Paired,
    choose_measure,
    on_evaluation,
    on_reviews,
)

log = logging.getLogger(__name__)

MAX_CASES = 200  # most recent reviewed cases re-classified for a comparison
START_PATIENCE = timedelta(minutes=45)  # AWS: starting "might take a few minutes"; waiter: 20
START_REQUESTED = "start requested"


# --- what the promotion says --------------------------------------------------------------
@dataclass
class PromoteProposal(Notice):
    """The candidate beside the served version, with the buttons to go on."""

    candidate: str = ""
    candidate_arn: str = ""
    served: str = ""
    comparison: Comparison | None = None
    step: int = 1  # the confirmation this proposal asks for (1, or 2 for a worse candidate)
    running: bool = False
    units: int = 1
    worse: bool = False
    summary: str = ""  # the comparison in one line (carried to the second confirmation)


@dataclass
class PromoteReply(Notice):
    """A one-paragraph answer: refused, started, switched, failed, cancelled."""

    kind: str = "info"  # info | error | started | switched | failed
    candidate: str = ""
    previous: str = ""
    previous_arn: str = ""  # the old version, offered for a stop once the candidate serves
    failure: AwsFailure | None = None  # why it failed, when AWS said no (after `text`)


# --- the service ---------------------------------------------------------------------------
class Promoter:
    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        serving: Any,  # `StoredServing`: serve(arn, by), version_arn(), current()
        store: ServedVersions,
        reviews: ReviewLog,
        runs: Runs,
        audit: Audit,
        outbox: Outbox,
        clock: Clock,
        fetcher: FileFetcher,
        served_classifier: Classifier,
        make_classifier: Callable[[str], Classifier],
        evaluation: Callable[[ModelVersion], Any] | None,  # async: Evaluation or None
        min_reviewed: int,
        max_bytes: int,
        max_pixels: int,
        poll_seconds: float,
        leases: Leases | None = None,
        owner: str | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        self.catalog = catalog
        self.serving = serving
        self.store = store
        self.reviews = reviews
        self.runs = runs
        self.audit = audit
        self.outbox = outbox
        self.clock = clock
        self.fetcher = fetcher
        self.served_classifier = served_classifier
        self.make_classifier = make_classifier
        self.evaluation = evaluation
        self.min_reviewed = min_reviewed
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.poll_seconds = poll_seconds
        self.leases = leases
        self.tolerance = tolerance  # the answer contract, as the router applies it
        self.owner = owner or new_owner()
        self._wake = asyncio.Event()
        self._resting = False  # paused between rounds (see `settle`)
        self._held: str | None = None  # the promotion lease this instance holds

    # --- /cxr promote ------------------------------------------------------------------------
    async def propose(self, actor: str, wanted: str) -> Notice:
        versions = await self.catalog.versions()
        candidate = find_version(versions, wanted)
        if candidate is None:
            names = ", ".join(v.name for v in versions) or "none"
            return PromoteReply(
                text=f"There is no version `{wanted}` (versions: {names}).", kind="error"
            )
        served_arn = self.serving.version_arn()
        if candidate.arn == served_arn:
            return PromoteReply(text=f"*{candidate.name}* is already the served version.")
        if candidate.status not in (RUNNING, STARTING, "TRAINING_COMPLETED", "STOPPED"):
            return PromoteReply(
                text=f"*{candidate.name}* can't serve: it is {candidate.status}.", kind="error"
            )
        flight = await self.store.in_flight()
        if flight is not None:
            return PromoteReply(
                text=f"A promotion is already under way ({_name(flight.candidate_arn)}).",
                kind="error",
            )
        served = find_version(versions, served_arn)
        comparison = await self.compare(candidate, served)
        await self.audit.record(
            self.clock.now(), actor, "promote:compare", candidate.name,
            f"{comparison.measure.value}: {_fmt(comparison.candidate.value)} vs "
            f"{_fmt(comparison.served.value)}",
        )  # fmt: skip
        return PromoteProposal(
            candidate=candidate.name,
            candidate_arn=candidate.arn,
            served=comparison.served.name,
            comparison=comparison,
            running=candidate.status == RUNNING,
            units=candidate.min_units or 1,
            worse=comparison.worse,
            summary=one_line(comparison),
        )

    async def compare(self, candidate: ModelVersion, served: ModelVersion | None) -> Comparison:
        served_name = served.name if served else self.serving.current().describe()
        cases = await self._reviewed_cases()
        measure = choose_measure(
            candidate_running=candidate.status == RUNNING,
            reviewed_cases=len(cases),
            min_reviewed=self.min_reviewed,
        )
        why = (
            f"{candidate.name} isn't running"
            if candidate.status != RUNNING
            else f"{len(cases)} reviewed cases, fewer than {self.min_reviewed}"
        )
        if measure is Measure.AGREEMENT:
            got = await self._agreement(candidate, cases)
            if got is not None and got[0].n >= self.min_reviewed:
                return on_reviews(candidate.name, served_name, *got)
            why = "too few reviewed images could be fetched again from Slack"
        cand_eval = await self._evaluation(candidate)
        served_eval = await self._evaluation(served) if served else None
        return on_evaluation(
            candidate.name,
            candidate.f1 if cand_eval is None or cand_eval.f1 is None else cand_eval.f1,
            tuple(cand_eval.labels) if cand_eval else (),
            served_name,
            (served.f1 if served else None)
            if served_eval is None or served_eval.f1 is None
            else served_eval.f1,
            tuple(served_eval.labels) if served_eval else (),
            why_fallback=why,
        )

    async def _reviewed_cases(self) -> list[tuple[Any, Label]]:
        exported = await self.reviews.off_loop(self.reviews.exported)
        images = await self.reviews.off_loop(self.reviews.reviewed_images)
        cases = [
            (image.ref, image.review.label.label)
            for image in images
            if image.ref is not None
            and image.review.label.label is not None
            and image.review.case not in exported
        ]
        return cases[-MAX_CASES:]

    async def _agreement(
        self, candidate: ModelVersion, cases: list[tuple[Any, Label]]
    ) -> tuple[Proportion, Proportion, Paired] | None:
        candidate_model = self.make_classifier(candidate.arn)
        agree_c = agree_s = n = only_c = only_s = 0
        for ref, truth in cases:
            try:
                data = await self.fetcher.fetch(ref, self.max_bytes)
                side = max(candidate_model.max_side, self.served_classifier.max_side)
                image = await asyncio.to_thread(
                    decode, data, max_side=side, max_pixels=self.max_pixels
                )
                said_c = _top(read_answer(await candidate_model.classify(image), self.tolerance))
                said_s = _top(await self.served_classifier.classify(image))
            except Exception as exc:  # deleted file, model hiccup: this case drops out
                log.info(
                    "promote.case_skipped",
                    extra={"file_id": ref.file_id, "error": type(exc).__name__},
                )
                continue
            n += 1
            right_c, right_s = said_c is truth, said_s is truth
            agree_c += right_c
            agree_s += right_s
            only_c += right_c and not right_s
            only_s += right_s and not right_c
        return Proportion(agree_c, n), Proportion(agree_s, n), Paired(only_c, only_s)

    async def _evaluation(self, version: ModelVersion) -> Any:
        if self.evaluation is None or version.evaluation_summary_s3 is None:
            return None
        try:
            return await self.evaluation(version)
        except Exception as exc:
            log.info("promote.evaluation_unavailable", extra={"error": type(exc).__name__})
            return None

    # --- the buttons -------------------------------------------------------------------------
    async def confirm(
        self,
        actor: str,
        channel: str,
        candidate_arn: str,
        step: int,
        units: int,
        *,
        worse: bool = False,
        served_name: str = "",
        summary: str = "",
    ) -> Notice:
        """A press of Promote (step 1) or of the second confirmation (step 2). The comparison
        travels in the button (Slack signs it), so a press re-fetches no images."""
        versions = await self.catalog.versions()
        candidate = find_version(versions, candidate_arn)
        if candidate is None:
            return PromoteReply(text="That version no longer exists.", kind="error")
        served_arn = self.serving.version_arn()
        if step < 2 and worse:
            await self.audit.record(
                self.clock.now(), actor, "promote", candidate.name, "confirm 1 of 2"
            )
            return PromoteProposal(
                candidate=candidate.name,
                candidate_arn=candidate.arn,
                served=served_name,
                step=2,
                running=candidate.status == RUNNING,
                units=units,
                worse=True,
                summary=summary,
            )
        promotion = await self.store.open_promotion(
            candidate.arn, served_arn, channel, actor, units, self.clock.now()
        )
        if promotion is None:
            return PromoteReply(text="A promotion is already under way.", kind="error")
        await self.audit.record(
            self.clock.now(), actor, "promote", candidate.name,
            "requested (worse, confirmed twice)" if step >= 2 else "requested",
        )  # fmt: skip
        if candidate.status != RUNNING:
            try:
                await self._start(promotion, candidate)
            except Exception as exc:
                failure = AwsFailure.of(exc)
                await self.store.finish(promotion.id, "failed", self.clock.now(), failure.code)
                await self.audit.record(
                    self.clock.now(), actor, "promote", candidate.name, f"failed: {failure.code}"
                )
                return PromoteReply(
                    text=f"I couldn't start *{candidate.name}*", kind="error", failure=failure
                )
            self.follow()
            return PromoteReply(
                text=(
                    f":hourglass_flowing_sand: Starting *{candidate.name}* ({units} unit"
                    f"{'s' if units != 1 else ''}). The served version keeps answering until it "
                    "is RUNNING; then I switch and say so here. Both bill while they overlap."
                ),
                kind="started",
                candidate=candidate.name,
            )
        return await self._switch(promotion, candidate)

    async def cancel(self, actor: str, candidate: str) -> Notice:
        await self.audit.record(self.clock.now(), actor, "promote", candidate, "cancelled")
        return PromoteReply(text=f"Promotion of *{candidate}* cancelled; nothing changed.")

    # --- following a start; every instance serving what is stored ---------------------------
    async def run(self) -> None:
        """A background job on every instance: serve the stored version (another instance may
        have promoted one), and move a promotion in flight along. One instance at a time does
        the latter (a lease on the promotion), so Rekognition is asked and the channel told
        once; a promotion a stopped or dead instance left open is picked up here."""
        while True:
            try:
                await self.sync()
                flight = await self.store.in_flight()
                if flight is not None and await self._lease(flight):
                    await self.tick()
                    await self.sync()
            except Exception as exc:
                log.warning("promote.poll_failed", extra={"error": AwsFailure.of(exc).code})
            await self._pause()

    def follow(self) -> None:
        """Poll now rather than at the next round (a promotion has just begun)."""
        self._wake.set()

    async def sync(self) -> None:
        """Switch this instance's router to the stored served version, if it differs."""
        stored = await self.store.served()
        if stored is not None and stored.version_arn != self.serving.version_arn():
            self.serving.switch(stored.version_arn)
            log.info("promote.synced", extra={"version": _name(stored.version_arn)})

    async def _lease(self, flight: Promotion) -> bool:
        if self.leases is None:
            return True
        ttl = timedelta(seconds=3 * self.poll_seconds)
        key = f"promotion:{flight.id}"
        held = await self.leases.acquire(key, self.owner, self.clock.now(), ttl) is not None
        self._held = key if held else None
        return held

    async def _pause(self) -> None:
        sleep = asyncio.ensure_future(self.clock.sleep(self.poll_seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        await asyncio.sleep(0)  # the clock holds the sleep before `settle` calls it a pause
        self._resting = True
        try:
            await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._resting = False
            for waiter in (sleep, woken):
                waiter.cancel()
            self._wake.clear()

    async def settle(self, within: float = 10.0) -> None:
        """Tests: wait until the background job pauses on the clock, so that moving a fake
        clock wakes it (moved mid-round, it would wake nothing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self._resting:
            if loop.time() > deadline:
                raise TimeoutError("the promoter did not settle")
            await asyncio.sleep(0.005)

    async def _start(self, promotion: Promotion, candidate: ModelVersion) -> None:
        """Ask for the candidate to run, and remember that it was asked (a restart between the
        two asks again; one after it waits for the start it asked for)."""
        if candidate.status != STARTING:
            await self.catalog.start(candidate.arn, promotion.units, None)
        await self.store.note(promotion.id, START_REQUESTED)

    async def tick(self) -> None:
        promotion = await self.store.in_flight()
        if promotion is None:
            return
        candidate = find_version(await self.catalog.versions(), promotion.candidate_arn)
        asked = promotion.note == START_REQUESTED
        if candidate is not None and not asked and candidate.status not in (RUNNING, FAILED):
            await self._start(promotion, candidate)  # the bot went down before asking
            return
        overdue = self.clock.now() - promotion.started_at > START_PATIENCE
        if (
            candidate is None
            or candidate.status in (FAILED, "STOPPED", "DEPRECATED", "EXPIRED")
            or (overdue and candidate.status != RUNNING)
        ):
            status = candidate.status if candidate else "gone"
            reason = (candidate.status_message if candidate else "") or f"it is {status}"
            if overdue and candidate is not None and candidate.status not in (FAILED, "STOPPED"):
                reason = f"it was still {status} after {START_PATIENCE.seconds // 60} minutes"
            await self.store.finish(promotion.id, "failed", self.clock.now(), reason)
            await self.audit.record(
                self.clock.now(),
                promotion.user,
                "promote",
                _name(promotion.candidate_arn),
                f"failed: {reason}",
            )
            await self._post(
                promotion,
                PromoteReply(
                    text=(
                        f":x: *{_name(promotion.candidate_arn)}* didn't start ({reason}); "
                        "serving is unchanged."
                    ),
                    kind="failed",
                ),
            )
            return
        if candidate.status == RUNNING:
            notice = await self._switch(promotion, candidate)
            if isinstance(notice, PromoteReply) and notice.kind == "switched":
                await self._post(promotion, notice)

    async def _switch(self, promotion: Promotion, candidate: ModelVersion) -> Notice:
        now = self.clock.now()
        if not await self.store.complete(promotion.id, candidate.arn, promotion.user, now):
            await self.sync()  # another instance switched first: follow it, say nothing
            return PromoteReply(text=f"*{candidate.name}* already serves.")
        await self.runs.open_run(candidate.arn, now, candidate.min_units or promotion.units, "bot")
        self.serving.switch(candidate.arn)
        await self.audit.record(now, promotion.user, "promote", candidate.name, "ok: serving")
        log.info("promote.switched", extra={"version": candidate.name})
        previous = promotion.previous_arn or ""
        text = f":white_check_mark: *{candidate.name}* now serves every new image."
        if previous:
            text += f" *{_name(previous)}* is still running and billing: stop it when you're happy."
        return PromoteReply(
            text=text,
            kind="switched",
            candidate=candidate.name,
            previous=_name(previous) if previous else "",
            previous_arn=previous,
        )

    async def _post(self, promotion: Promotion, notice: Notice) -> None:
        try:
            await self.outbox.post(promotion.channel, notice)
        except Exception as exc:
            log.warning("promote.post_failed", extra={"error": type(exc).__name__})

    async def close(self) -> None:
        """An open promotion stays in SQLite; its lease is let go, so the next instance (or
        this one restarted) follows it at once rather than after the lease runs out."""
        if self.leases is not None and self._held is not None:
            try:
                await self.leases.release([self._held], self.owner)
            except Exception as exc:
                log.warning("promote.release_failed", extra={"error": type(exc).__name__})
            self._held = None


def one_line(c: Comparison) -> str:
    """ "F1 …: cxr.v3 0.800 vs cxr.v2 0.900" (what the second confirmation repeats)."""
    return (
        f"{c.basis}: {c.candidate.name} {_fmt(c.candidate.value)} vs "
        f"{c.served.name} {_fmt(c.served.value)}"
    )


def _top(prediction: Any) -> Label:
    return max(prediction.scores, key=lambda label: prediction.scores[label])


def _name(arn: str) -> str:
    parts = arn.split("/")
    return parts[-2] if "/version/" in arn and len(parts) >= 2 else arn


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
