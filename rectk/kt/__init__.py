"""Knowledge tracing: batches of graded answers, their metrics, and training through the
shared loop (the models are plugins: ``rectk.registry.knowledge_tracers``)."""
