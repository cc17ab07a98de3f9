"""CNN image classification: the Question 2 networks of both homework years."""
