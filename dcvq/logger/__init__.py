from dcvq.logger.base import RunLogger

__all__ = ["RunLogger"]
