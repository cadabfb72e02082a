"""Multi-turn spoken conversations in JSON (InstructS2S): reader ``conversations``."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from alarm.corpus.collection.errors import CollectError, SpecError
from alarm.corpus.collection.readers.base import Item, as_tuple, glob_files, register


@dataclass(frozen=True)
class ConversationOptions:
    """Multi-turn spoken conversations in JSON (InstructS2S): one entry per spoken user turn.

    Each entry has the conversation ``id``, the ``turn`` index, the turn's ``text``, ``_audio``
    (``audio_dir`` joined with the last ``keep_path_parts`` parts of the turn's audio path as
    stored in the file) and ``_context``: the earlier turns as ``{role, content}`` text.
    """

    files: tuple[str, ...]
    id_key: str = "id"
    turns_key: str = "conversation"
    role_key: str = "from"
    text_key: str = "text"
    audio_key: str = "speech"
    user_role: str = "human"
    audio_dir: str = ""
    keep_path_parts: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", as_tuple(self.files))
        if self.keep_path_parts < 1:
            raise SpecError("keep_path_parts must be at least 1")


@register("conversations", ConversationOptions)
def read_conversations(root: Path, opts: ConversationOptions) -> Iterator[Item]:
    for rel in glob_files(root, opts.files):
        with open(root / rel, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as err:
                raise CollectError(f"{rel}: not valid JSON ({err})") from None
        if not isinstance(doc, list):
            raise CollectError(f"{rel}: expected a JSON array of conversations")
        for conv in doc:
            conv_id = conv.get(opts.id_key) if isinstance(conv, Mapping) else None
            turns = conv.get(opts.turns_key) if isinstance(conv, Mapping) else None
            if conv_id is None or not isinstance(turns, list):
                yield {"_file": rel, "_error": f"{rel}: conversation without {opts.id_key!r}/{opts.turns_key!r}"}
                continue
            context: list[dict[str, str]] = []
            for index, turn in enumerate(turns):
                text = str(turn.get(opts.text_key) or "").strip()
                is_user = turn.get(opts.role_key) == opts.user_role
                if is_user:
                    item: Item = {"_file": rel, "id": conv_id, "turn": index, "text": text, "_context": tuple(context)}
                    speech = turn.get(opts.audio_key)
                    if not speech:
                        item["_error"] = f"{rel}: conversation {conv_id} turn {index} has no {opts.audio_key!r}"
                    else:
                        tail = str(speech).replace("\\", "/").split("/")[-opts.keep_path_parts :]
                        item["_audio"] = posixpath.join(opts.audio_dir, *tail)
                    yield item
                context.append({"role": "user" if is_user else "assistant", "content": text})
