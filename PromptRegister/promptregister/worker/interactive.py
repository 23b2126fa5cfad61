"""The worker's interactive requests (protocol version 2): sessions on a pair of volumes, pairs by id, fits.

Requests (each answered by one "result" or "error" event with its id):

    open     {fixed, moving, model, device, checkpoint, decoder, options, session?}
                                                                           -> session, slices, refines
    prompt   {session, points: [{lps, positive}], pair?}                  -> pair (fast path; "pair" re-prompts it)
    correct  {session, pair, lps}                                          -> pair (fixed ROI from the user's point)
    delete   {session, pair}                                               -> deleted, pairs
    undo     {session}                                                     -> action, removed, restored
    auto     {session}  /  text {session, text, detector?}                 -> pairs, rejected
    fit      {session, pairs?, warm?}                                      -> transform, summary
    pairs    {session}                                                     -> pairs (ids only, and names)
    close    {session}                                                     -> closed

Background work reports with the session's id as the event id, after "open" has answered: "progress"
{stage: "embed", fraction} while the slices are embedded, "update" {what: "embedded"} when they all are, and
"update" {what: "pair", pair} when a fast pair was refined (it replaces the pair of the same id).

Everything runs on one thread, in arrival order; background work (embedding, refinement) runs only while no
request waits and stops between encoder batches when one arrives (it resumes afterwards), so a click never
waits for more than one batch of background work.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from pathlib import Path
from typing import Any, Deque, Dict

from .fields import shown
from .bad_requests import SAFE_NAME, ProtocolError
from .protocol import Cancelled, error_fields


class Preempted(Exception):
    """Background work stops because a request is waiting."""


def pair_event(pair) -> Dict[str, Any]:
    """A pair as the protocol sends it: id, name, figures, and both masks as run lengths."""
    from ..interactive import encode_mask
    from ..interactive.session import low_confidence_reasons

    source = dict(pair.slice_pair.source) if pair.slice_pair is not None else dict(pair.roi.source)
    reasons = [] if pair.corrected_lps is not None else low_confidence_reasons(source)
    return {"id": pair.id, "name": pair.roi.name, "method": pair.method, "version": pair.version,
            "similarity": round(float(pair.roi.score), 4), "confidence": source.get("confidence"),
            "agreement": source.get("agreement"), "low_confidence": bool(reasons), "reasons": reasons,
            "refined": pair.refined, "corrected": pair.corrected_lps is not None, "source": source,
            "fixed_mask": encode_mask(pair.roi.fixed_mask), "moving_mask": encode_mask(pair.roi.moving_mask)}


class InteractiveRequests:
    """Sessions and the thread that serves them."""

    def __init__(self, server) -> None:
        self.server = server  # for send, the v1 session's volumes and warm models, and the private folder
        self.sessions: Dict[str, Any] = {}
        self.folders: Dict[str, Path] = {}
        self.numbers = itertools.count(1)
        self.waiting: "queue.Queue[dict]" = queue.Queue()
        self.background: Deque[tuple] = collections.deque()  # (session id, kind, argument)
        self.current_id: Any = None
        self.cancel_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def submit(self, request: Dict[str, Any]) -> None:
        self.waiting.put(request)

    def cancel(self, target: Any) -> bool:
        if self.current_id is not None and target in (None, self.current_id):
            self.cancel_flag.set()
            return True
        return False

    def stop(self) -> None:
        self.cancel_flag.set()
        self.waiting.put({"type": "_stop"})

    # -- the thread ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            try:
                request = self.waiting.get(timeout=None if not self.background else 0.0)
            except queue.Empty:
                self.background_step()
                continue
            if request.get("type") == "_stop":
                return
            self.answer(request)

    def answer(self, request: Dict[str, Any]) -> None:
        request_id = request["id"]
        self.current_id, self.cancel_flag = request_id, threading.Event()
        flag = self.cancel_flag

        def progress(stage: str, fraction: float) -> None:
            if flag.is_set():
                raise Cancelled()
            self.server.send(request_id, "progress", stage=stage, fraction=round(min(max(fraction, 0.0), 1.0), 3))

        try:
            result = getattr(self, f"do_{request['type']}")(request, progress)
            self.server.send(request_id, "result", **result)
        except Exception as error:  # the session keeps working after any one request
            self.server.send(request_id, "error", **error_fields(error, "cancelled; the session is as before"))
        finally:
            self.current_id = None

    def background_step(self) -> None:
        session_id, kind, argument = self.background[0]
        session = self.sessions.get(session_id)

        def check(stage: str = "", fraction: float = 0.0) -> None:
            if not self.waiting.empty():
                raise Preempted()

        try:
            if session is None:
                self.background.popleft()
            elif kind == "embed":
                def report(stage: str, fraction: float) -> None:
                    self.server.send(session_id, "progress", stage="embed", fraction=round(fraction, 3))
                if session.embed_step(report):
                    self.background.popleft()
                    self.server.send(session_id, "update", what="embedded",
                                     slices=session.fixed.num_slices + session.moving.num_slices)
            elif kind == "refine":
                pair_id, version = argument
                refined = session.refine(pair_id, version, check)
                self.background.popleft()
                if refined is not None:
                    self.server.send(session_id, "update", what="pair", pair=pair_event(refined))
        except Preempted:
            return  # stays first in line; runs again once the waiting request is answered
        except Exception as error:  # background work must never stop the session
            self.background.popleft()
            fields = error_fields(error, "cancelled")  # prints what it does not expect to stderr
            self.server.send(session_id, "log", message=f"background {kind} failed: {fields['message']}")

    # -- requests ------------------------------------------------------------------------------------------------
    def session(self, request: Dict[str, Any]):
        session_id = request.get("session")
        if session_id not in self.sessions:
            raise ProtocolError("bad_request", f"unknown session {shown(session_id)}; open one first")
        return session_id, self.sessions[session_id]

    @staticmethod
    def pair_id(request: Dict[str, Any]) -> str:
        pair_id = request.get("pair")
        if not isinstance(pair_id, str) or not pair_id:
            raise ProtocolError("bad_request", f'"{request["type"]}" needs "pair": a pair id such as "p1"')
        return pair_id

    def do_open(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        from ..interactive.session import InteractiveSession
        from .session import register_options

        store = self.server.session
        session_id = request.get("session")  # a client may name it, to send clicks before this answer arrives
        # the name becomes the session's folder: a plain name, never a path (as batch pair ids); checked before
        # any volume or model is loaded
        if session_id is not None and (not isinstance(session_id, str) or not SAFE_NAME.match(session_id)
                                       or session_id in self.sessions):
            raise ProtocolError("bad_request", '"session" must be a new plain name (letters, digits, ".", "_", "-", '
                                f'starting with a letter or digit); {shown(session_id)} is not')
        device = request.get("device", "auto")
        options = register_options(request.get("options") or {}, device)
        fixed, moving = store.volume(request.get("fixed"), "fixed"), store.volume(request.get("moving"), "moving")
        segmenter = store.segmenter(request.get("model", "auto"), device, request.get("checkpoint"), progress,
                                    request.get("decoder"))
        session = InteractiveSession(fixed, moving, segmenter, options)
        session_id = session_id or f"s{next(self.numbers)}"
        self.sessions[session_id] = session
        self.folders[session_id] = store.folder / session_id
        self.folders[session_id].mkdir(exist_ok=True)
        self.background.append((session_id, "embed", None))
        return {"session": session_id, "model": segmenter.name, "model_reason": store.model_reason,
                "slices": {"fixed": session.fixed.num_slices, "moving": session.moving.num_slices},
                "refines": session.refines}

    def do_prompt(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        session_id, session = self.session(request)
        points = request.get("points")
        if not isinstance(points, list) or not points:
            raise ProtocolError("bad_request", '"prompt" needs "points": [{"lps": [x, y, z], "positive": true}]')
        pair = session.prompt([self.server.session.point_prompt(p) for p in points], request.get("pair"), progress)
        if not pair.refined:
            self.background.appendleft((session_id, "refine", (pair.id, pair.version)))  # before the embedding
        return {"pair": pair_event(pair)}

    def do_correct(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        _, session = self.session(request)
        point = self.server.session.point_prompt({"lps": request.get("lps")}).point
        return {"pair": pair_event(session.correct(self.pair_id(request), point))}

    def do_delete(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        _, session = self.session(request)
        pair_id = self.pair_id(request)
        session.delete(pair_id)
        return {"deleted": pair_id, "pairs": list(session.book.pairs)}

    def do_undo(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        _, session = self.session(request)
        action, removed, restored = session.undo()
        return {"action": action, "removed": removed, "restored": [pair_event(pair) for pair in restored],
                "pairs": list(session.book.pairs)}

    def do_auto(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        _, session = self.session(request)
        added, rejected = session.auto(progress)
        return {"pairs": [pair_event(pair) for pair in added], "rejected": rejected}

    def do_text(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        from ..models.text import clean_phrases

        _, session = self.session(request)
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("bad_request", '"text" needs "text": one or more phrases, comma-separated')
        detector = self.server.session.detector(request.get("detector", "grounding-dino-tiny"),
                                                request.get("device", "auto"), request.get("detector_checkpoint"))
        added, rejected = session.text(clean_phrases(text), detector, progress)
        return {"pairs": [pair_event(pair) for pair in added], "rejected": rejected}

    def do_fit(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        from ..io import write_transform

        session_id, session = self.session(request)
        ids = request.get("pairs")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise ProtocolError("bad_request", '"pairs" must be a list of pair ids, or left out for all of them')
        result = session.fit(ids, progress, warm=bool(request.get("warm", True)))
        progress("write", 1.0)  # the last point where a cancel takes effect
        path = self.folders[session_id] / "transform.h5"
        write_transform(result.transform(), path)  # atomic (io.atomic): a reader never sees half a file
        summary = result.summary()
        summary["pairs"] = [{"id": pair_id, **entry} for pair_id, entry in zip(session.last_fit_ids, summary["pairs"])]
        return {"transform": str(path), "summary": summary, "warm": result.warm_started,
                "seconds": round(result.timings.get("total", 0.0), 3)}

    def do_pairs(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        _, session = self.session(request)
        return {"pairs": [{"id": pair.id, "name": pair.roi.name, "version": pair.version}
                          for pair in session.book.live()]}

    def do_close(self, request: Dict[str, Any], progress) -> Dict[str, Any]:
        session_id, _ = self.session(request)
        del self.sessions[session_id]
        self.background = collections.deque(job for job in self.background if job[0] != session_id)
        return {"closed": session_id}
