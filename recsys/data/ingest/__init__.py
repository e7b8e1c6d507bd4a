"""Ingestion: a platform's raw tables -> a pseudonymised, validated world folder.

``ingest_files`` (what ``recsys-ingest`` runs) reads raw files chunk by chunk through a column
and value mapping (``run``, ``mapping``, ``readers``); ``ingest`` takes tables already in
memory (``memory``). Both pseudonymise user ids before anything is validated or written, and
write the vocabularies every later stage maps ids with.
"""

from recsys.data.ingest.mapping import MappingError, TableSource, source_from_dict
from recsys.data.ingest.memory import entity_vocabs, ingest, pseudonymise_tables
from recsys.data.ingest.report import IngestReport
from recsys.data.ingest.run import IngestSettings, ingest_files

__all__ = [
    "IngestReport",
    "IngestSettings",
    "MappingError",
    "TableSource",
    "entity_vocabs",
    "ingest",
    "ingest_files",
    "pseudonymise_tables",
    "source_from_dict",
]
