"""Human review loops, compatible with Amazon Augmented AI (A2I).

A flow definition (``service.review.flows``, served through SageMaker's CreateFlowDefinition,
DescribeFlowDefinition, ListFlowDefinitions and DeleteFlowDefinition in
``service.review.sagemaker_api``) says when a DetectModerationLabels answer needs a person's
review: its activation conditions (``model.human_review``), the work team, the task, and
where the reviews are written. Human loops are started from those answers.
"""
