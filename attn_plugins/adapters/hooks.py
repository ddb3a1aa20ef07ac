"""Hook bookkeeping shared by the adapters."""

from __future__ import annotations


def remove_hooks(handles: list) -> list[Exception]:
    """Remove every hook handle (all of them, even if one fails); empties ``handles``, returns the errors."""
    errors = []
    for handle in handles:
        try:
            handle.remove()
        except Exception as exc:  # noqa: BLE001 - keep removing the rest
            errors.append(exc)
    handles.clear()
    return errors
