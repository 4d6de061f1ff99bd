-- One Docker Hub push notification, the same every time (they coalesce into one job).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"push_data":{"tag":"latest","pusher":"bench"},"repository":{"repo_name":"myorg/web"}}'
