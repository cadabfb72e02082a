"""Moved: the collection engine is the package :mod:`alarm.corpus.collection`.

This name stays so that existing imports (``from alarm.corpus.collect import DatasetSpec``)
keep working; new code imports from :mod:`alarm.corpus.collection`.
"""

from __future__ import annotations

from alarm.corpus.collection import *  # noqa: F403
from alarm.corpus.collection.readers import *  # noqa: F403  (the readers' options and functions)
