"""The production CloudFormation stack, generated with troposphere.

Layer: deployment. ``template.build_template(params)`` is pure and returns the whole stack; ``python -m
cloudformation`` writes it out. Resource shapes the service depends on (table keys and indexes, TTL
attribute, bucket CORS and lifecycle, upload role) come from ``service.resources``, the one definition the
embedded default provisions too. Nothing under ``service/`` imports from here.
"""
