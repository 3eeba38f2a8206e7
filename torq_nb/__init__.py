"""torq_nb: research inside notebooks, with live staged progress and exports."""
