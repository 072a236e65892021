"""Events out: what DeepFER sees, told to the systems a shop already runs (MQTT, webhooks), with alert rules.

``sink.EventsSink`` is a pipeline sink (added only by ``streamer.assembly.build_stored_pipeline``) that turns tracked
results into ``aggregator.events`` payloads and ``aggregator.alerts`` alerts and offers them to each publisher
(``mqtt.MqttPublisher``, ``webhooks.WebhookPublisher``). Publishers queue within a bound and send from threads of
their own: the pipeline never waits for a broker or a receiver.
"""
