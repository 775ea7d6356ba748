"""The SPVIS tracker: SIM, PGT (association, referring decoder, error correction), RCP, and the
track life cycle, all operating on an explicit `TrackerState`."""

from spvis_model.tracker.state import ACTIVE, FREE, LOST, TENTATIVE, TrackerState

__all__ = ["ACTIVE", "FREE", "LOST", "TENTATIVE", "TrackerState"]
