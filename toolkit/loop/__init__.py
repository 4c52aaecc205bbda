"""The feedback loop beyond the server: labelled feedback from the store, the champion/challenger gate, releasing the winner."""
