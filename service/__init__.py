"""todo-service: a TODO-list REST microservice on FastAPI, Beanie and MongoDB."""
