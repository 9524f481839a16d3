"""What Stagewise keeps on disk: the history of runs, exports, the app's settings, and
where each lives (:mod:`.paths`)."""
