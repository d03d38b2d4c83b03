"""ArtifactReport: any clip -> what a viewer would notice, re-measured (mouth, eyes, lip-sync lag,
identity drift, flicker, broken frames). Entry points: `artifact_report.score_clip`, `plot.render_artifact_plot`."""
