//! The Digimon service: create a digimon, feed it (Foster), and watch its day (QueryStream).

use crate::pb::digimon_server::Digimon;
use crate::pb::{
    CreateRequest, CreateResponse, FosterRequest, FosterResponse, QueryRequest, QueryResponse,
};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Longest accepted name or food, in bytes.
const MAX_NAME: usize = 64;

/// What a watched digimon goes through, one stream update each: (status, location, weather).
/// A digimon that was fed evolves; a hungry one does not.
const DAY_FED: [(&str, &str, &str); 3] = [
    ("hatching", "Primary Village", "sunny"),
    ("rookie", "File Island beach", "cloudy"),
    ("champion", "Infinity Mountain", "stormy"),
];
const DAY_HUNGRY: [(&str, &str, &str); 3] = [
    ("hatching", "Primary Village", "sunny"),
    ("rookie", "File Island beach", "cloudy"),
    ("hungry", "File Island beach", "rainy"),
];

#[derive(Debug, Clone)]
struct Creature {
    name: String,
    status: String,
    meals: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    created: u64,
    creatures: HashMap<String, Creature>,
}

/// The service, with its digimon in memory.
#[derive(Debug, Clone)]
pub struct DigimonService {
    state: Arc<Mutex<State>>,
    step: Duration,
}

impl DigimonService {
    /// A service whose streams pause `step` between updates.
    pub fn new(step: Duration) -> DigimonService {
        DigimonService {
            state: Arc::default(),
            step,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the map half-written: every update is one insert.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn checked<'a>(what: &str, value: &'a str) -> Result<&'a str, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    if value.len() > MAX_NAME {
        return Err(Status::invalid_argument(format!(
            "{what} is longer than {MAX_NAME} bytes"
        )));
    }
    Ok(value)
}

fn unknown(id: &str) -> Status {
    Status::not_found(format!("no digimon with id `{id}`; create one first"))
}

/// The server-stream type of QueryStream.
pub type QueryStreamBody =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<QueryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Digimon for DigimonService {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let name = checked("name", &request.get_ref().name)?.to_owned();
        let mut state = self.state();
        state.created += 1;
        let id = format!("d{:04}", state.created);
        let creature = Creature {
            name: name.clone(),
            status: "egg".to_owned(),
            meals: Vec::new(),
        };
        state.creatures.insert(id.clone(), creature);
        println!("Create name={name} -> id={id}");
        Ok(Response::new(CreateResponse {
            id,
            name,
            status: "egg".to_owned(),
        }))
    }

    async fn foster(
        &self,
        request: Request<FosterRequest>,
    ) -> Result<Response<FosterResponse>, Status> {
        let req = request.get_ref();
        let food = req.food.as_ref().map_or("", |f| f.name.as_str());
        let food = checked("food.name", food)?.to_owned();
        let mut state = self.state();
        let creature = state
            .creatures
            .get_mut(&req.id)
            .ok_or_else(|| unknown(&req.id))?;
        creature.status = format!("fed ({food})");
        creature.meals.push(food.clone());
        println!("Foster id={} food={food}", req.id);
        Ok(Response::new(FosterResponse {}))
    }

    type QueryStreamStream = QueryStreamBody;

    async fn query_stream(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStreamStream>, Status> {
        let id = request.into_inner().id;
        let creature = self
            .state()
            .creatures
            .get(&id)
            .cloned()
            .ok_or_else(|| unknown(&id))?;
        let day = if creature.meals.is_empty() {
            DAY_HUNGRY
        } else {
            DAY_FED
        };
        println!("QueryStream id={id}: {} updates", day.len());
        let (tx, rx) = tokio::sync::mpsc::channel(day.len());
        let service = self.clone();
        let step = self.step;
        tokio::spawn(async move {
            for (i, (status, location, weather)) in day.into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(step).await;
                }
                if let Some(c) = service.state().creatures.get_mut(&id) {
                    c.status = status.to_owned();
                }
                let update = QueryResponse {
                    id: id.clone(),
                    name: creature.name.clone(),
                    status: status.to_owned(),
                    location: location.to_owned(),
                    weather: weather.to_owned(),
                };
                if tx.send(Ok(update)).await.is_err() {
                    // The client went away.
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::pb::digimon_client::DigimonClient;
    use crate::pb::foster_request::Food;

    /// The real server on a loopback port, and a tonic client for it.
    async fn connect() -> DigimonClient<tonic::transport::Channel> {
        let (listener, addr) = crate::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        tokio::spawn(crate::serve_grpc(listener, Duration::from_millis(10)));
        DigimonClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }

    async fn watch(
        client: &mut DigimonClient<tonic::transport::Channel>,
        id: &str,
    ) -> Vec<QueryResponse> {
        let mut stream = client
            .query_stream(QueryRequest { id: id.to_owned() })
            .await
            .unwrap()
            .into_inner();
        let mut updates = Vec::new();
        while let Some(u) = stream.message().await.unwrap() {
            updates.push(u);
        }
        updates
    }

    #[tokio::test]
    async fn create_feed_and_watch_a_digimon() {
        let mut client = connect().await;
        let created = client
            .create(CreateRequest {
                name: " Agumon ".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.name, "Agumon");
        assert_eq!(created.status, "egg");
        let other = client
            .create(CreateRequest {
                name: "Gabumon".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(created.id, other.id);

        client
            .foster(FosterRequest {
                id: created.id.clone(),
                food: Some(Food {
                    name: "meat".into(),
                }),
            })
            .await
            .unwrap();
        let fed = watch(&mut client, &created.id).await;
        let statuses: Vec<&str> = fed.iter().map(|u| u.status.as_str()).collect();
        assert_eq!(statuses, ["hatching", "rookie", "champion"]);
        assert!(fed.iter().all(|u| u.id == created.id && u.name == "Agumon"));
        let places: std::collections::BTreeSet<&str> =
            fed.iter().map(|u| u.location.as_str()).collect();
        assert_eq!(places.len(), 3, "the location changes: {fed:?}");

        let hungry = watch(&mut client, &other.id).await;
        assert_eq!(hungry.last().unwrap().status, "hungry");
    }

    #[tokio::test]
    async fn bad_requests_get_grpc_errors() {
        let mut client = connect().await;
        let empty = client
            .create(CreateRequest { name: "  ".into() })
            .await
            .unwrap_err();
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
        let long = client
            .create(CreateRequest {
                name: "x".repeat(MAX_NAME + 1),
            })
            .await
            .unwrap_err();
        assert_eq!(long.code(), tonic::Code::InvalidArgument);
        let missing = client
            .foster(FosterRequest {
                id: "nope".into(),
                food: Some(Food {
                    name: "meat".into(),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        assert!(missing.message().contains("nope"), "{}", missing.message());
        let created = client
            .create(CreateRequest {
                name: "Agumon".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let no_food = client
            .foster(FosterRequest {
                id: created.id,
                food: None,
            })
            .await
            .unwrap_err();
        assert_eq!(no_food.code(), tonic::Code::InvalidArgument);
        let stream = client
            .query_stream(QueryRequest { id: "nope".into() })
            .await
            .unwrap_err();
        assert_eq!(stream.code(), tonic::Code::NotFound);
    }
}
