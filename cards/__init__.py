"""cards: turn podcast notes and transcripts into Anki flashcard decks."""

__version__ = "0.1.0"
