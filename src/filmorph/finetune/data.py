"""Chat data of the fine-tuning track: validation, counts, clean copies, a synthetic set.

The format is OpenAI's chat JSONL: one conversation per line,
``{"messages": [{"role": ..., "content": ...}, ...]}`` (other top-level keys, e.g. ``tools``,
are kept). A conversation is valid when

* the line is UTF-8 JSON holding an object with a non-empty ``messages`` list;
* every message is an object with a ``role`` of ``system``, ``user``, ``assistant`` or ``tool``
  and a string ``content`` (an assistant turn that carries ``tool_calls`` may have ``null``);
* ``system`` messages come only before the first other turn, and that first other turn is a
  ``user`` turn;
* a ``tool`` message follows an assistant turn with ``tool_calls`` (or another tool message)
  and names a ``tool_call_id`` (NeMo Automodel's chat dataset requires one);
* at least one assistant turn has non-blank content (there is something to learn).

Blank lines are separators, not conversations. Bad lines raise :class:`ChatDataError` naming
``file:line`` and the reason (``on_bad_record="error"``), or are counted per reason and left
out of the clean copy (``"skip"``), as the corpus stage does. Counts satisfy
``records_in == conversations + skipped_total`` for every file.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, write_json_atomic

ROLES = ("system", "user", "assistant", "tool")
BAD_REASONS = (
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_messages",
    "empty_conversation",
    "bad_message",
    "unknown_role",
    "bad_content",
    "misplaced_system",
    "first_turn_not_user",
    "bad_tool_message",
    "no_assistant_content",
)
SPLITS = ("train", "validation")


class ChatDataError(ValueError):
    """A conversation that cannot be used, with the file and line it came from."""


@dataclass(frozen=True)
class Problem:
    """Why a line is not a usable conversation: a reason of :data:`BAD_REASONS` and a detail."""

    reason: str
    detail: str


def check_conversation(obj: Any) -> Problem | None:
    """``None`` when ``obj`` (a parsed JSON line) is a valid conversation, else the first problem."""
    if not isinstance(obj, dict):
        return Problem("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if not isinstance(messages, list):
        return Problem("missing_messages", "no 'messages' list")
    if not messages:
        return Problem("empty_conversation", "'messages' is empty")
    seen_other = False
    assistant_text = False
    previous: dict[str, Any] | None = None
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            return Problem("bad_message", f"{where} is not an object")
        role = m.get("role")
        if role not in ROLES:
            return Problem("unknown_role", f"{where} has role {role!r}; allowed: {', '.join(ROLES)}")
        content = m.get("content")
        tool_calls = m.get("tool_calls")
        if role == "assistant" and tool_calls is not None:
            if not isinstance(tool_calls, list) or not tool_calls:
                return Problem("bad_tool_message", f"{where}: 'tool_calls' must be a non-empty list")
            if content is not None and not isinstance(content, str):
                return Problem("bad_content", f"{where}: 'content' must be a string or null")
        elif not isinstance(content, str):
            return Problem("bad_content", f"{where} ({role}): 'content' must be a string")
        if role == "system":
            if seen_other:
                return Problem("misplaced_system", f"{where}: a system message after the conversation began")
        elif not seen_other:
            if role != "user":
                return Problem(
                    "first_turn_not_user", f"{where}: the first non-system turn is {role!r}, not 'user'"
                )
            seen_other = True
        if role == "tool":
            if not isinstance(m.get("tool_call_id"), str) or not m["tool_call_id"]:
                return Problem("bad_tool_message", f"{where}: a tool message needs a 'tool_call_id'")
            prev_role = previous.get("role") if previous else None
            if not (prev_role == "tool" or (prev_role == "assistant" and previous.get("tool_calls"))):
                return Problem(
                    "bad_tool_message", f"{where}: a tool message must answer an assistant tool call"
                )
        if role == "assistant" and isinstance(content, str) and content.strip():
            assistant_text = True
        previous = m
    if not seen_other:
        return Problem("first_turn_not_user", "only system messages")
    if not assistant_text:
        return Problem("no_assistant_content", "no assistant turn with non-empty content")
    return None


@dataclass
class FileCounts:
    """Conversations in and out of one file and what the good ones hold."""

    path: str
    records_in: int = 0
    conversations: int = 0
    blank_lines: int = 0
    skipped: Counter = field(default_factory=Counter)
    turns: Counter = field(default_factory=Counter)
    chars: Counter = field(default_factory=Counter)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def add(self, obj: Mapping[str, Any]) -> None:
        self.conversations += 1
        for m in obj["messages"]:
            self.turns[m["role"]] += 1
            self.chars[m["role"]] += len(m.get("content") or "")

    def as_dict(self) -> dict[str, Any]:
        assert self.records_in == self.conversations + self.skipped_total, self
        return {
            "path": self.path,
            "records_in": self.records_in,
            "conversations": self.conversations,
            "skipped_total": self.skipped_total,
            "skipped": {r: self.skipped.get(r, 0) for r in BAD_REASONS},
            "blank_lines": self.blank_lines,
            "turns": {r: self.turns.get(r, 0) for r in ROLES},
            "turns_total": sum(self.turns.values()),
            "chars": {r: self.chars.get(r, 0) for r in ROLES},
            "chars_total": sum(self.chars.values()),
        }


def iter_conversations(
    path: str | Path, *, on_bad_record: str = "error", counts: FileCounts | None = None
) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """``(line number, raw line, conversation)`` for every valid line of ``path``; bad lines
    raise :class:`ChatDataError` (``on_bad_record="error"``) or are counted in ``counts``
    (``"skip"``)."""
    if on_bad_record not in ("error", "skip"):
        raise ValueError(f"on_bad_record must be 'error' or 'skip', not {on_bad_record!r}")
    path = Path(path)
    counts = counts if counts is not None else FileCounts(str(path))
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                counts.blank_lines += 1
                continue
            counts.records_in += 1
            problem: Problem | None
            obj: Any = None
            try:
                obj = json.loads(raw.decode("utf-8"))
                problem = check_conversation(obj)
            except UnicodeDecodeError as exc:
                problem = Problem("invalid_utf8", str(exc))
            except json.JSONDecodeError as exc:
                problem = Problem("invalid_json", exc.msg)
            if problem is not None:
                if on_bad_record == "error":
                    raise ChatDataError(
                        f"{path}:{lineno}: {problem.reason}: {problem.detail} (set finetune.data."
                        "on_bad_record: skip to count and skip such lines)"
                    )
                counts.skipped[problem.reason] += 1
                continue
            counts.add(obj)
            yield lineno, raw.rstrip(b"\r\n"), obj


def validate_chat_file(
    path: str | Path, *, on_bad_record: str = "error", clean_path: str | Path | None = None
) -> dict[str, Any]:
    """Validate one chat JSONL file; counts as a dict. With ``clean_path`` the valid lines are
    written there (byte for byte, one per line) atomically; a file without any valid
    conversation is an error whatever the policy."""
    counts = FileCounts(str(path))
    lines = (raw for _, raw, _ in iter_conversations(path, on_bad_record=on_bad_record, counts=counts))
    if clean_path is None:
        for _ in lines:
            pass
    else:
        with atomic_path(clean_path) as tmp, open(tmp, "wb") as out:
            for raw in lines:
                out.write(raw + b"\n")
            if counts.conversations == 0:
                raise ChatDataError(f"{path}: no valid conversation ({counts.records_in} lines read)")
    if counts.conversations == 0:
        raise ChatDataError(f"{path}: no valid conversation ({counts.records_in} lines read)")
    return counts.as_dict()


def validate_chat_data(
    files: Mapping[str, str | Path],
    out: str | Path,
    *,
    on_bad_record: str = "error",
    clean_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Validate every ``{split: file}``; write ``{"on_bad_record", "files": {split: counts}}`` to
    ``out`` atomically (only when every file passes) and, with ``clean_dir``, the valid lines of
    each split to ``clean_dir/{split}.jsonl``. Returns the counts."""
    result: dict[str, Any] = {"on_bad_record": on_bad_record, "files": {}}
    for split, path in files.items():
        clean = Path(clean_dir) / f"{split}.jsonl" if clean_dir is not None else None
        result["files"][split] = validate_chat_file(path, on_bad_record=on_bad_record, clean_path=clean)
    write_json_atomic(out, result)
    return result


# ============================================================================ synthetic data
_WORDS = (
    "bahay aso pusa araw gabi tubig kain inom laro aral sulat basa bata guro libro lapis mesa "
    "upuan puno bulaklak ibon isda dagat bundok ilog ulan hangin bituin buwan lungsod bayan "
    "kalye daan tulay palengke bigas tinapay gatas kape asukal asin itlog manok baboy baka "
    "gulay prutas saging mangga niyog papaya pinya sapatos damit sumbrero payong relo susi"
).split()
_SYSTEM = "Ikaw ay isang matulunging katulong. Sumagot nang maikli at tama."


def _task(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 6))]
    if kind == 0:
        return f"Ulitin mo ang mga salita: {' '.join(words)}", " ".join(words)
    if kind == 1:
        return f"Baligtarin ang ayos ng mga salita: {' '.join(words)}", " ".join(reversed(words))
    if kind == 2:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return f"Magkano ang {a} + {b}?", str(a + b)
    word = rng.choice(_WORDS)
    return f"Ibaybay ang salitang '{word}'.", " ".join(word)


def synthetic_conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` deterministic, learnable Tagalog chat conversations (repeat, reverse, add,
    spell): a third with a system prompt, a quarter with two exchanges."""
    rng = random.Random(f"filmorph-chat-{seed}")
    out = []
    for _ in range(n):
        messages: list[dict[str, str]] = []
        if rng.random() < 1 / 3:
            messages.append({"role": "system", "content": _SYSTEM})
        for _ in range(2 if rng.random() < 0.25 else 1):
            q, a = _task(rng)
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        out.append({"messages": messages})
    return out


def write_synthetic(path: str | Path, n: int, seed: int = 0) -> int:
    """Write :func:`synthetic_conversations` as chat JSONL, atomically; returns ``n``."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in synthetic_conversations(n, seed)),
            encoding="utf-8",
        )
    return n


def write_chat_jsonl(path: str | Path, conversations: list[Mapping[str, Any]]) -> None:
    """Write conversations as chat JSONL, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8"
        )


def fetch_url(url: str, out: str | Path, *, timeout: float = 120.0) -> dict[str, Any]:
    """Download ``url`` to ``out`` atomically (the login-node rule); returns size and sha256."""
    import hashlib
    import urllib.request

    h = hashlib.sha256()
    size = 0
    with atomic_path(out) as tmp, urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
        while chunk := resp.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
            fh.write(chunk)
    return {"url": url, "bytes": size, "sha256": h.hexdigest()}
