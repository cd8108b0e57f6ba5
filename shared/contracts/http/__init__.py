"""The HTTP contracts between the gateway and the services: one module per service, holding the models of
what crosses that boundary. The service answers with these models and the gateway reads with them, so
the two can never disagree about a shape (see HOUSE_STYLE: a public response is never typed ``Any``)."""
