// The /docs page: Swagger UI on the gateway's own OpenAPI document. Paths are relative to
// /docs, so the page also works behind a proxy that serves the gateway under a prefix.
"use strict";

window.addEventListener("load", () => {
  const ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    // Its default sends the document to validator.swagger.io: nothing leaves for another host.
    validatorUrl: null,
    deepLinking: true,
    tryItOutEnabled: true,
    // A successful log-in answers a token in `data.token`: the protected routes use it at
    // once, as if it had been pasted under "Authorize".
    responseInterceptor: (response) => {
      const token = response.ok && response.body && response.body.data && response.body.data.token;
      if (typeof token === "string") {
        ui.preauthorizeApiKey("bearerAuth", token);
      }
      return response;
    },
  });
  window.ui = ui;
});
