"""The model-facing layer above the runtime: authoring tools (create, repair, mutate, teach) and, later,
solving tasks with them. It talks to a model only through `evogit.llm` and to the library only through
`evogit.runtime`."""
