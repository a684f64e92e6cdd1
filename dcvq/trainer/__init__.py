from dcvq.trainer.loop import NonFiniteLossError, Trainer, train

__all__ = ["NonFiniteLossError", "Trainer", "train"]
